"""GGUF header parsing and validation: agreement with the gguf library, and bad files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from duetto.engine.errors import InvalidModelFile
from duetto.engine.gguf_file import open_gguf, summarize
from duetto.engine.gguf_header import read_header


def _reader_value(field: gguf.ReaderField):
    value = field.contents()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [item.item() if isinstance(item, np.generic) else item for item in value]
    return value


@pytest.mark.parametrize("role", ["draft", "target", "other"])
def test_header_agrees_with_the_gguf_library(tiny_models: dict[str, Path], role: str) -> None:
    path = tiny_models[role]
    reference = gguf.GGUFReader(path)
    header = read_header(path)

    expected_metadata = {
        name: _reader_value(field) for name, field in reference.fields.items() if not name.startswith("GGUF.")
    }
    assert header.metadata == expected_metadata
    assert header.data_offset == reference.data_offset
    assert [(t.name, t.n_elements, t.n_bytes, t.data_offset, t.tensor_type) for t in header.tensors] == [
        (t.name, t.n_elements, t.n_bytes, t.data_offset, t.tensor_type) for t in reference.tensors
    ]


def test_summary_of_a_tiny_model(tiny_models: dict[str, Path]) -> None:
    summary = summarize(tiny_models["target"])

    assert summary.architecture == "llama"
    assert summary.vocabulary_size == 660
    assert summary.chat_template_present
    assert summary.quantization == "F32"
    assert summary.parameter_count == sum(t.n_elements for t in read_header(tiny_models["target"]).tensors)


def _copy_with(source: Path, destination: Path, transform) -> Path:
    destination.write_bytes(transform(source.read_bytes()))
    return destination


@pytest.mark.parametrize(
    ("label", "transform", "reason"),
    [
        ("empty", lambda data: b"", "too small"),
        ("random bytes", lambda data: os.urandom(4096), "bad magic"),
        ("text", lambda data: b"this is not a model, just some text " * 10, "bad magic"),
        ("truncated in the tensor data", lambda data: data[: len(data) // 2], "extends past the end"),
        ("truncated in the header", lambda data: data[:200], "truncated|past the end"),
        ("unsupported version", lambda data: data[:4] + struct.pack("<I", 99) + data[8:], "unsupported GGUF version"),
        ("absurd metadata count", lambda data: data[:16] + struct.pack("<Q", 2**62) + data[24:], "implausible"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(
    tiny_models: dict[str, Path], tmp_path: Path, label: str, transform, reason: str
) -> None:
    bad = _copy_with(tiny_models["draft"], tmp_path / "bad.gguf", transform)

    with pytest.raises(InvalidModelFile, match=reason) as caught:
        open_gguf(bad)
    assert "\n" not in str(caught.value)


def test_a_missing_file_or_a_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="no such file"):
        open_gguf(tmp_path / "nothing.gguf")
    with pytest.raises(InvalidModelFile, match="not a regular file"):
        open_gguf(tmp_path)
