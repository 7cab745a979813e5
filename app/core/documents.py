"""Reading a document in: its text from the file, then the small model reads each chunk once.

Each chunk's embedding and compressed text are committed on their own, so an interrupted ingest
resumes where it stopped. Questions over the stored memory are app/core/questions.py.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from duetto.engine.chunking import split_into_chunks
from duetto.engine.document_reader import DocumentReader
from duetto.store import documents as document_store
from duetto.store.conversations import User
from duetto.store.errors import StoreError

MAX_DOCUMENT_BYTES = 2_000_000
"""About 500k tokens, which the small model reads in roughly an hour on a laptop CPU."""
MAX_PDF_BYTES = 50_000_000


class InvalidDocument(StoreError):
    """The text cannot be stored as a document (empty, binary, not UTF-8, too large)."""


def decode_document(data: bytes, label: str) -> str:
    """The document's text (plain text, Markdown or a PDF's text), or a one-line reason it cannot be one."""
    if data[:5] == b"%PDF-":
        return _pdf_text(data, label)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidDocument(
            f"{label} is {len(data) / 1e6:.1f} MB; documents are limited to {MAX_DOCUMENT_BYTES / 1e6:.0f} MB "
            "of text (split it into parts)"
        )
    if b"\x00" in data[:65536]:
        raise InvalidDocument(f"{label} looks like a binary file; give plain text, Markdown or a PDF")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidDocument(f"{label} is not UTF-8 text (bad byte at offset {error.start})") from error
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise InvalidDocument(f"{label} is empty")
    return text


def _pdf_text(data: bytes, label: str) -> str:
    if len(data) > MAX_PDF_BYTES:
        raise InvalidDocument(f"{label} is {len(data) / 1e6:.0f} MB; PDFs are limited to {MAX_PDF_BYTES // 10**6} MB")
    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings on damaged files would be a second line
    try:
        pages = [page.extract_text() or "" for page in pypdf.PdfReader(io.BytesIO(data)).pages]
    except Exception as error:  # pypdf raises many types for damaged files
        raise InvalidDocument(f"{label}: cannot read this PDF ({type(error).__name__}: {error})") from error
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise InvalidDocument(f"{label} has no extractable text (a scanned PDF needs OCR first)")
    return decode_document(text.encode("utf-8"), label)


# --- ingest -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    name: str
    tokens: int
    chunks: int
    memory_tokens: int
    seconds: float
    resumed_chunks: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tokens": self.tokens,
            "chunks": self.chunks,
            "memory_tokens": self.memory_tokens,
            "seconds": round(self.seconds, 3),
        }


def ingest_document(
    db: sqlite_utils.Database,
    reader: DocumentReader,
    model_id: str,
    name: str,
    text: str,
    source: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    owner: User | None = None,
) -> IngestResult:
    """Read ``text`` into memory under ``name`` (``owner``'s document; by default the default
    user's); ``on_progress(done, total)`` after each chunk.

    Rerunning after an interruption continues with the chunks not yet stored.
    """
    started = time.perf_counter()
    document_store.validate_document_name(name)
    chunks = split_into_chunks(text, reader.count_tokens)
    total_tokens = chunks[-1].token_end if chunks else 0
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    document = document_store.begin_document(db, name, source, sha256, total_tokens, owner)
    stored = document_store.chunk_positions(db, document.id)
    if stored:
        first = document_store.list_chunks(db, [document.id])[0]
        if first.model_sha256 != model_id:
            raise StoreError(f"document {name!r} was partly read by another model; `duetto docs rm {name}` first")
    if on_progress:
        on_progress(len(stored), len(chunks))
    for position, chunk in enumerate(chunks):
        if position in stored:
            continue
        if should_cancel and should_cancel():
            raise InterruptedError(f"reading {name!r} was cancelled; run it again to continue")
        reading = reader.read(chunk.text)
        document_store.add_chunk(
            db,
            document.id,
            position,
            chunk.text,
            (chunk.token_start, chunk.token_end),
            reading.compressed_text,
            reading.compressed_tokens,
            reading.embedding,
            model_id,
        )
        if on_progress:
            on_progress(position + 1, len(chunks))
    document_store.mark_complete(db, document.id)
    finished = document_store.get_document(db, name, owner)
    return IngestResult(
        name=name,
        tokens=finished.tokens,
        chunks=finished.chunk_count,
        memory_tokens=finished.memory_tokens,
        seconds=time.perf_counter() - started,
        resumed_chunks=len(stored),
    )
