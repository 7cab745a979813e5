"""Fuzzing every reader of outside input with Hypothesis (issue 20, item 4): each input ends in a
result or one of duetto's own errors, never a traceback, a hang or memory sized by a lie.

The readers: the GGUF header (random and mutated headers, counts that claim terabytes), document
text (mutated text, Markdown and PDF bytes), the models manifest, keys.yaml, a profile's saved
settings, a chats import file, and the server's request bodies (chat and text completions); the
HTTP layer itself takes raw random requests on a live server (tests/fuzz/test_fuzz_http.py).
Case counts per parser are in docs/RELIABILITY.md; DUETTO_FUZZ_SCALE multiplies them (tests/fixtures/fuzzing.py).
"""

from __future__ import annotations

import contextlib
import json
import struct
import tempfile
from pathlib import Path

import pytest
import yaml
from fuzzing import fuzz
from hypothesis import example, given
from hypothesis import strategies as st

from duetto.app.core.chat_export import InvalidExport, import_json
from duetto.app.core.documents import InvalidDocument, decode_document
from duetto.app.core.settings import ChatSettings, conversation_chat_settings
from duetto.app.server.errors import ApiError
from duetto.app.server.requests import chat_request, text_request
from duetto.app.tui.keys import KeysFileError, load_keymap
from duetto.engine.decoder import DecodeSettings
from duetto.engine.errors import InvalidModelFile, ManifestError
from duetto.engine.gguf_file import open_gguf
from duetto.engine.gguf_header import GgufFormatError, read_header
from duetto.engine.manifest import parse_manifest
from duetto.store.conversations import ensure_user
from duetto.store.database import open_database
from duetto.store.errors import StoreError

MANIFEST = Path(__file__).resolve().parents[2] / "models_manifest.yaml"


# --- GGUF headers ---------------------------------------------------------------------------


def gguf_bytes(version: int, tensors: int, fields: int, body: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, fields) + body


def a_string(text: bytes, claimed: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if claimed is None else claimed) + text


def a_field(key: bytes, value_type: int, value: bytes) -> bytes:
    return a_string(key) + struct.pack("<I", value_type) + value


# Headers that lie: counts and lengths that claim terabytes, arrays of arrays, unknown types.
LYING_HEADERS = [
    gguf_bytes(3, 2**62, 2**62, b""),
    gguf_bytes(3, 0, 1, a_field(b"general.name", 8, a_string(b"x", claimed=2**60))),
    gguf_bytes(3, 0, 1, a_field(b"tokens", 9, struct.pack("<IQ", 8, 2**40))),
    gguf_bytes(3, 0, 1, a_field(b"nested", 9, struct.pack("<IQ", 9, 2**20) + struct.pack("<IQ", 9, 2**20) * 4)),
    gguf_bytes(3, 0, 1, a_field(b"odd", 77, b"")),
    gguf_bytes(3, 1, 0, a_string(b"w") + struct.pack("<I", 2**31) + struct.pack("<Q", 1) * 4),
    gguf_bytes(3, 1, 0, a_string(b"w") + struct.pack("<I", 1) + struct.pack("<Q", 2**63) + struct.pack("<IQ", 0, 0)),
    gguf_bytes(7, 0, 0, b""),
]


def header_of(data: bytes) -> None:
    """The header reader, then the model-file check every command goes through (open_gguf: every
    tensor inside the file); each either reads the bytes or refuses them with its own error."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.gguf"
        path.write_bytes(data)
        with contextlib.suppress(GgufFormatError):
            read_header(path)
        with contextlib.suppress(InvalidModelFile):
            open_gguf(path)


@pytest.mark.parametrize("data", LYING_HEADERS)
def test_gguf_headers_that_claim_terabytes_are_refused_without_allocating(data: bytes) -> None:
    with pytest.raises(InvalidModelFile), tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.gguf"
        path.write_bytes(data + b"\x00" * 64)
        open_gguf(path)


@fuzz(1500)
@given(st.binary(max_size=512))
def test_random_bytes_are_a_gguf_header_or_a_format_error(data: bytes) -> None:
    header_of(data)
    header_of(b"GGUF" + data)
    header_of(b"GGUF\x03\x00\x00\x00" + data)


@fuzz(1500)
@given(st.sampled_from(LYING_HEADERS), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6))
def test_mutated_gguf_headers_are_a_header_or_a_format_error(data: bytes, flips: list[tuple[int, int]]) -> None:
    mutated = bytearray(data + b"\x00" * 64)
    for position, value in flips:
        mutated[position % len(mutated)] = value
    header_of(bytes(mutated))


def test_a_real_tiny_model_header_mutated_byte_by_byte(tiny_models: dict[str, Path]) -> None:
    """Every one of the first 4 KiB of a real model's header set to 0xff in turn: a header or an error."""
    original = tiny_models["draft"].read_bytes()[:4096]
    for position in range(0, len(original)):
        mutated = bytearray(original)
        mutated[position] = 0xFF
        header_of(bytes(mutated))


# --- documents --------------------------------------------------------------------------------


@fuzz(1500)
@given(st.binary(max_size=2048))
@example(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n")
@example(b"%PDF-" + b"\x00" * 100)
@example(b"# T\n\n```python\nx = 1\n")
def test_document_bytes_are_text_or_one_invalid_document_error(data: bytes) -> None:
    try:
        text = decode_document(data, "fuzzed")
    except InvalidDocument as error:
        assert "\n" not in str(error), "one line"
        return
    assert isinstance(text, str) and text.strip()


@fuzz(1000)
@given(st.text(max_size=2000))
def test_any_text_a_user_pastes_is_a_document_or_one_error(text: str) -> None:
    with contextlib.suppress(InvalidDocument):
        decode_document(text.encode("utf-8", "surrogatepass"), "pasted")


# --- the manifest, keys.yaml, settings, imports ----------------------------------------------------


@fuzz(1000)
@given(st.binary(max_size=1024) | st.text(max_size=1024).map(str.encode))
def test_a_mangled_manifest_is_a_manifest_or_a_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(data.decode("utf-8", "replace"))


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@fuzz(1000)
@given(st.dictionaries(st.sampled_from(["regenerate", "help", "quit", "nope", "settings"]), yaml_values, max_size=4))
def test_a_keys_file_is_a_keymap_or_one_error_naming_the_file(data: dict) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "keys.yaml"
        path.write_text(yaml.safe_dump(data))
        try:
            keymap = load_keymap(path)
        except KeysFileError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            return
        assert all(isinstance(keys, str) and keys for keys in keymap.values())


@fuzz(1000)
@given(st.binary(max_size=300))
def test_a_damaged_keys_file_is_one_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "keys.yaml"
        path.write_bytes(data)
        with contextlib.suppress(KeysFileError):
            load_keymap(path)


@fuzz(1000)
@given(st.dictionaries(st.sampled_from(["mode", "temperature", "max_tokens", "drafter", "fallback_threshold",
                                        "rollback_threshold", "max_draft_run", "show_draft_sources", "other"]),
                       yaml_values, max_size=5))  # fmt: skip
def test_saved_chat_settings_are_settings_or_one_store_error(chat: dict) -> None:
    with contextlib.suppress(StoreError):
        conversation_chat_settings({"chat": chat}, ChatSettings())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", 3]),
            "content": st.text(max_size=40) | st.none(),
        },
        optional={"stats": json_values, "created_at": json_values},
    ),
    max_size=5,
)


@pytest.fixture(scope="module")
def import_db(tmp_path_factory: pytest.TempPathFactory):
    return open_database(tmp_path_factory.mktemp("import") / "duetto.db")


@fuzz(500)
@given(st.fixed_dictionaries({}, optional={"title": json_values, "system_prompt": json_values, "settings": json_values,
                                           "messages": messages | json_values}) | json_values)  # fmt: skip
def test_an_import_file_is_a_whole_conversation_or_none_of_it(import_db, data) -> None:
    user = ensure_user(import_db)
    before = import_db.execute("SELECT count(*) FROM messages").fetchone()[0]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chat.json"
        path.write_text(json.dumps(data))
        try:
            conversation = import_json(import_db, user, path)
        except InvalidExport as error:
            assert "\n" not in str(error)
            assert import_db.execute("SELECT count(*) FROM messages").fetchone()[0] == before, "nothing half-kept"
            return
    kept = import_db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", [conversation.id]).fetchone()
    assert kept[0] == len(data["messages"])


# --- the server's request bodies ---------------------------------------------------------------

content = (
    st.text(max_size=40)
    | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "input_audio", 7]), "text": json_values}),
        max_size=3,
    )
    | json_values
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values,
        "messages": st.lists(st.fixed_dictionaries({"role": json_values | st.sampled_from(["user", "system",
                                                    "assistant", "developer", "tool"]), "content": content}),
                             max_size=4) | json_values,
        "max_tokens": json_values | st.integers(-5, 10**12), "max_completion_tokens": json_values,
        "temperature": json_values | st.floats(), "top_p": json_values | st.floats(), "seed": json_values,
        "stop": json_values, "n": json_values, "stream": json_values, "stream_options": json_values,
        "tools": json_values, "response_format": json_values, "logprobs": json_values, "user": json_values,
        "prediction": json_values | st.fixed_dictionaries({"type": st.just("content"), "content": content}),
        "duetto": json_values | st.fixed_dictionaries({}, optional={"documents": json_values, "mode": json_values,
                                                                     "drafter": json_values}),
    },
)  # fmt: skip


@fuzz(1500)
@given(chat_bodies | json_values)
def test_a_chat_completions_body_is_a_request_or_an_openai_shaped_400(body) -> None:
    try:
        request = chat_request(body, DecodeSettings())
    except ApiError as error:
        assert 400 <= error.status < 500 and str(error) and "\n" not in str(error)
        return
    assert request.messages


@fuzz(1000)
@given(st.fixed_dictionaries({}, optional={"prompt": content, "max_tokens": json_values, "temperature": json_values,
                                           "stop": json_values, "echo": json_values, "suffix": json_values})
       | json_values)  # fmt: skip
def test_a_text_completions_body_is_a_request_or_an_openai_shaped_400(body) -> None:
    try:
        text_request(body, DecodeSettings())
    except ApiError as error:
        assert 400 <= error.status < 500 and "\n" not in str(error)
