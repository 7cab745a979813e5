"""Checking GGUF files and summarizing them: what ``import`` validates and ``inspect`` shows.

Nothing here loads weights; a multi-gigabyte file is memory-mapped and only its
header is parsed, so these checks take a second or two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from duetto.engine.errors import InvalidModelFile
from duetto.engine.gguf_header import GgufFormatError, GgufHeader, read_header


@dataclass(frozen=True)
class GgufSummary:
    path: Path
    file_size: int
    gguf_version: int
    architecture: str
    name: str | None
    parameter_count: int
    context_length: int | None
    quantization: str
    tensor_types: dict[str, int]
    vocabulary_size: int
    tokenizer_model: str | None
    chat_template_present: bool
    bos_token_id: int | None
    eos_token_id: int | None

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["path"] = str(self.path)
        return data


def open_gguf(path: Path) -> GgufHeader:
    """Parse ``path``'s header and tensor table, checking that every tensor lies inside the file.

    Raises InvalidModelFile with a reason a user can act on.
    """
    if not path.exists():
        raise InvalidModelFile(f"{path}: no such file")
    if not path.is_file():
        raise InvalidModelFile(f"{path}: not a regular file")
    try:
        header = read_header(path)
    except GgufFormatError as error:
        raise InvalidModelFile(f"{path}: not a valid GGUF model: {error}") from error
    except OSError as error:
        raise InvalidModelFile(f"{path}: cannot read: {error.strerror or error}") from error
    if not header.tensors:
        raise InvalidModelFile(f"{path}: GGUF file holds no tensors")
    file_size = path.stat().st_size
    for tensor in header.tensors:
        if tensor.data_offset + tensor.n_bytes > file_size:
            raise InvalidModelFile(
                f"{path}: tensor {tensor.name} extends past the end of the file (truncated download?)"
            )
    return header


def summarize(path: Path) -> GgufSummary:
    header = open_gguf(path)
    metadata = header.metadata
    architecture = metadata.get("general.architecture") or "unknown"
    tensor_types: dict[str, int] = {}
    for tensor in header.tensors:
        type_name = tensor.tensor_type.name
        tensor_types[type_name] = tensor_types.get(type_name, 0) + 1
    file_type = metadata.get("general.file_type")
    if file_type is not None:
        try:
            quantization = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            quantization = f"file type {file_type}"
    else:
        quantization = max(tensor_types, key=tensor_types.get)
    return GgufSummary(
        path=path,
        file_size=path.stat().st_size,
        gguf_version=header.version,
        architecture=architecture,
        name=metadata.get("general.name"),
        parameter_count=sum(tensor.n_elements for tensor in header.tensors),
        context_length=metadata.get(f"{architecture}.context_length"),
        quantization=quantization,
        tensor_types=tensor_types,
        vocabulary_size=len(metadata.get("tokenizer.ggml.tokens", [])),
        tokenizer_model=metadata.get("tokenizer.ggml.model"),
        chat_template_present="tokenizer.chat_template" in metadata,
        bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=metadata.get("tokenizer.ggml.eos_token_id"),
    )
