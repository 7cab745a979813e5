"""A fast reader for a GGUF file's header: metadata and tensor table, no tensor data.

Why not ``gguf.GGUFReader``: it builds numpy views for every element of every
array field, which for Qwen's 151,936-token vocabulary and as many merges takes
about 8 s per file here (measured with gguf 0.19 on the 0.5B model); this reader
walks the same bytes with ``struct`` in well under a second. It uses the gguf
library's own tables for value types, tensor types and their block sizes, and
``tests/engine/test_gguf_header.py`` checks it against GGUFReader field by field.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

SUPPORTED_VERSIONS = (2, 3)
MAX_ARRAY_LENGTH = 1 << 28  # a sanity bound: anything larger is a corrupt length, not a real vocabulary
MAX_DIMENSIONS = 8

_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B",
    GGUFValueType.INT8: "b",
    GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I",
    GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f",
    GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q",
    GGUFValueType.FLOAT64: "d",
    GGUFValueType.BOOL: "?",
}


class GgufFormatError(ValueError):
    """The bytes are not a well-formed GGUF header."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    tensor_type: GGMLQuantizationType
    n_elements: int
    n_bytes: int
    data_offset: int  # absolute offset in the file


@dataclass(frozen=True)
class GgufHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    data_offset: int


class _Cursor:
    def __init__(self, buffer: mmap.mmap | bytes) -> None:
        self.buffer = buffer
        self.offset = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.buffer):
            raise GgufFormatError("header ends early (truncated file)")
        (value,) = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += size
        return value

    def string(self) -> str:
        length = self.unpack("Q")
        if self.offset + length > len(self.buffer):
            raise GgufFormatError("a string runs past the end of the file")
        raw = self.buffer[self.offset : self.offset + length]
        self.offset += length
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, value_type: int) -> Any:
        if value_type == GGUFValueType.STRING:
            return self.string()
        if value_type == GGUFValueType.ARRAY:
            item_type = self.unpack("I")
            length = self.unpack("Q")
            if length > MAX_ARRAY_LENGTH:
                raise GgufFormatError(f"implausible array length {length}")
            if item_type in _SCALAR_FORMATS:
                fmt = _SCALAR_FORMATS[GGUFValueType(item_type)]
                size = struct.calcsize(fmt) * length
                if self.offset + size > len(self.buffer):
                    raise GgufFormatError("an array runs past the end of the file")
                values = list(struct.unpack_from(f"<{length}{fmt}", self.buffer, self.offset))
                self.offset += size
                return values
            return [self.value(item_type) for _ in range(length)]
        try:
            return self.unpack(_SCALAR_FORMATS[GGUFValueType(value_type)])
        except (ValueError, KeyError):
            raise GgufFormatError(f"unknown metadata value type {value_type}") from None


def read_header(path: Path) -> GgufHeader:
    """Parse ``path``'s header; raises GgufFormatError on malformed bytes, OSError on I/O."""
    with path.open("rb") as handle:
        if path.stat().st_size < 24:
            raise GgufFormatError("file too small to be a GGUF model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _parse(buffer)


def _parse(buffer: mmap.mmap) -> GgufHeader:
    cursor = _Cursor(buffer)
    if bytes(buffer[:4]) != b"GGUF":
        raise GgufFormatError("bad magic bytes")
    cursor.offset = 4
    version = cursor.unpack("I")
    if version not in SUPPORTED_VERSIONS:
        raise GgufFormatError(f"unsupported GGUF version {version}")
    tensor_count = cursor.unpack("Q")
    metadata_count = cursor.unpack("Q")
    if tensor_count > MAX_ARRAY_LENGTH or metadata_count > MAX_ARRAY_LENGTH:
        raise GgufFormatError("implausible tensor or metadata count")
    metadata: dict[str, Any] = {}
    for _ in range(metadata_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.unpack("I"))

    raw_tensors = []
    for _ in range(tensor_count):
        name = cursor.string()
        dimension_count = cursor.unpack("I")
        if dimension_count > MAX_DIMENSIONS:
            raise GgufFormatError(f"tensor {name} has {dimension_count} dimensions")
        shape = tuple(cursor.unpack("Q") for _ in range(dimension_count))
        type_code = cursor.unpack("I")
        relative_offset = cursor.unpack("Q")
        try:
            tensor_type = GGMLQuantizationType(type_code)
        except ValueError:
            raise GgufFormatError(f"tensor {name} has unknown type {type_code}") from None
        raw_tensors.append((name, shape, tensor_type, relative_offset))

    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GgufFormatError(f"invalid alignment {alignment!r}")
    data_offset = -(-cursor.offset // alignment) * alignment

    tensors = []
    for name, shape, tensor_type, relative_offset in raw_tensors:
        n_elements = 1
        for dimension in shape:
            n_elements *= dimension
        block_size, type_size = GGML_QUANT_SIZES[tensor_type]
        tensors.append(
            TensorInfo(
                name=name,
                shape=shape,
                tensor_type=tensor_type,
                n_elements=n_elements,
                n_bytes=n_elements * type_size // block_size,
                data_offset=data_offset + relative_offset,
            )
        )
    return GgufHeader(version=version, metadata=metadata, tensors=tensors, data_offset=data_offset)
