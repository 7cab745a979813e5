"""Documents and their memory: chunks with embeddings and compressed text, and KV states.

Ingest writes one chunk per transaction, keyed by (document, position), so a crash
loses at most the chunk being written and a rerun continues where it stopped; a
document is usable once ``complete`` is set by the last step.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sqlite_utils

from duetto.store import clock
from duetto.store.conversations import User, ensure_user
from duetto.store.errors import NameTaken, NotFound, StoreError
from duetto.store.transactions import writing

DOCUMENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$")


@dataclass(frozen=True)
class Document:
    id: int
    name: str
    source: str | None
    sha256: str
    tokens: int
    complete: bool
    created_at: str
    chunk_count: int
    memory_tokens: int
    """Tokens of the compressed text over all chunks: what reading the whole memory costs."""
    user_id: int | None = None
    """The user who added it; only they can ask about it."""


@dataclass(frozen=True)
class Chunk:
    id: int
    document_id: int
    position: int
    text: str
    token_start: int
    token_end: int
    compressed_text: str
    compressed_tokens: int
    embedding: np.ndarray
    model_sha256: str
    file_path: str | None = None
    """The file it came from, for a document read from a folder."""

    @property
    def tokens(self) -> int:
        return self.token_end - self.token_start


def validate_document_name(name: str) -> str:
    if not DOCUMENT_NAME_PATTERN.match(name) or name != name.strip():
        raise StoreError(
            f"invalid document name {name!r}: use up to 80 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


_SELECT_DOCUMENTS = """
    SELECT d.id, d.name, d.source, d.sha256, d.tokens, d.complete, d.created_at,
           count(c.id), coalesce(sum(c.compressed_tokens), 0), d.user_id
    FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
"""


def _document(row: Sequence) -> Document:
    return Document(
        id=row[0],
        name=row[1],
        source=row[2],
        sha256=row[3],
        tokens=row[4] or 0,
        complete=bool(row[5]),
        created_at=row[6],
        chunk_count=row[7],
        memory_tokens=row[8],
        user_id=row[9],
    )


def list_documents(db: sqlite_utils.Database, owner: User | None = None) -> list[Document]:
    """Every document, or ``owner``'s."""
    where, parameters = (" WHERE d.user_id = ?", [owner.id]) if owner is not None else ("", [])
    rows = db.execute(_SELECT_DOCUMENTS + where + " GROUP BY d.id ORDER BY d.name", parameters).fetchall()
    return [_document(row) for row in rows]


def find_document(db: sqlite_utils.Database, name: str) -> Document | None:
    row = db.execute(_SELECT_DOCUMENTS + " WHERE d.name = ? GROUP BY d.id", [name]).fetchone()
    return _document(row) if row else None


def get_document(db: sqlite_utils.Database, name: str, owner: User | None = None) -> Document:
    """A complete document (``owner``'s, when given: another user's is not found, as if it were
    not there); a half-ingested one is reported as such."""
    document = find_document(db, name)
    if document is None or owner is not None and document.user_id != owner.id:
        raise NotFound(f"no document named {name!r}; see: duetto docs list")
    if not document.complete:
        raise StoreError(f"document {name!r} was not fully read; run `duetto docs add` again to finish it")
    return document


def begin_document(
    db: sqlite_utils.Database, name: str, source: str | None, sha256: str, tokens: int, owner: User | None = None
) -> Document:
    """The document to write chunks into: a new one (``owner``'s, by default the default user's),
    or the unfinished one with the same content."""
    validate_document_name(name)
    owner = owner or ensure_user(db)
    existing = find_document(db, name)
    if existing is not None and existing.user_id != owner.id:
        raise NameTaken(f"another user has a document named {name!r}; pick another --name")
    if existing is not None:
        if existing.complete:
            raise NameTaken(f"a document named {name!r} already exists; pick another --name or `duetto docs rm` it")
        if existing.sha256 != sha256:
            raise NameTaken(
                f"document {name!r} is a half-finished read of different content; `duetto docs rm {name}` first"
            )
        return existing
    with writing(db):
        db["documents"].insert(
            {
                "name": name,
                "source": source,
                "sha256": sha256,
                "tokens": tokens,
                "complete": 0,
                "created_at": clock.now(),
                "user_id": owner.id,
            }
        )
    document = find_document(db, name)
    assert document is not None
    return document


def chunk_positions(db: sqlite_utils.Database, document_id: int) -> set[int]:
    rows = db.execute("SELECT position FROM chunks WHERE document_id = ?", [document_id]).fetchall()
    return {row[0] for row in rows}


def add_chunk(
    db: sqlite_utils.Database,
    document_id: int,
    position: int,
    text: str,
    token_span: tuple[int, int],
    compressed_text: str,
    compressed_tokens: int,
    embedding: np.ndarray,
    model_sha256: str,
    file_path: str | None = None,
) -> None:
    """One chunk in one transaction: after a crash it is either wholly there or absent."""
    with writing(db):
        db.execute(
            "INSERT INTO chunks (document_id, position, text, token_start, token_end, compressed_text, "
            "compressed_tokens, embedding, model_sha256, file_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                document_id,
                position,
                text,
                token_span[0],
                token_span[1],
                compressed_text,
                compressed_tokens,
                np.asarray(embedding, dtype=np.float32).tobytes(),
                model_sha256,
                file_path,
            ],
        )


def begin_folder(db: sqlite_utils.Database, name: str, source: str, owner: User | None = None) -> Document:
    """The document a folder is read into: new, or the same folder's earlier read (complete or
    not), marked unfinished until this read ends (a crash leaves it resumable, not half-new)."""
    validate_document_name(name)
    owner = owner or ensure_user(db)
    existing = find_document(db, name)
    if existing is not None:
        if existing.user_id != owner.id:
            raise NameTaken(f"another user has a document named {name!r}; pick another --name")
        if existing.source != source:
            raise NameTaken(
                f"a document named {name!r} already exists and was not read from {source}; "
                "pick another --name or `duetto docs rm` it"
            )
        with writing(db):
            db.execute("UPDATE documents SET complete = 0 WHERE id = ?", [existing.id])
        return find_document(db, name)
    with writing(db):
        db["documents"].insert(
            {
                "name": name,
                "source": source,
                "sha256": "",
                "tokens": 0,
                "complete": 0,
                "created_at": clock.now(),
                "user_id": owner.id,
            }  # fmt: skip
        )
    document = find_document(db, name)
    assert document is not None
    return document


def document_files(db: sqlite_utils.Database, document_id: int) -> dict[str, str]:
    """The files read completely into the document: path → content sha256."""
    rows = db.execute("SELECT path, sha256 FROM document_files WHERE document_id = ?", [document_id]).fetchall()
    return {row[0]: row[1] for row in rows}


def chunk_file_paths(db: sqlite_utils.Database, document_id: int) -> set[str]:
    rows = db.execute(
        "SELECT DISTINCT file_path FROM chunks WHERE document_id = ? AND file_path IS NOT NULL", [document_id]
    ).fetchall()
    return {row[0] for row in rows}


def forget_file(db: sqlite_utils.Database, document_id: int, path: str) -> None:
    """Drop a file's chunks (their index entries and states by cascade) and its record, together."""
    with writing(db):
        db.execute("DELETE FROM chunks WHERE document_id = ? AND file_path = ?", [document_id, path])
        db.execute("DELETE FROM document_files WHERE document_id = ? AND path = ?", [document_id, path])


def record_file(db: sqlite_utils.Database, document_id: int, path: str, sha256: str, chunks: int) -> None:
    """A file is wholly read: written after its last chunk."""
    with writing(db):
        db.execute(
            "INSERT OR REPLACE INTO document_files (document_id, path, sha256, chunks) VALUES (?, ?, ?, ?)",
            [document_id, path, sha256, chunks],
        )


def next_chunk_place(db: sqlite_utils.Database, document_id: int) -> tuple[int, int]:
    """(position, token offset) after the document's last chunk."""
    row = db.execute(
        "SELECT coalesce(max(position) + 1, 0), coalesce(max(token_end), 0) FROM chunks WHERE document_id = ?",
        [document_id],
    ).fetchone()
    return row[0], row[1]


def finish_folder(db: sqlite_utils.Database, document_id: int) -> None:
    """The folder's read is over: its content hash (over every file's) and size, and complete."""
    files = sorted(document_files(db, document_id).items())
    digest = hashlib.sha256("\n".join(f"{path}\t{sha}" for path, sha in files).encode()).hexdigest()
    with writing(db):
        db.execute(
            "UPDATE documents SET sha256 = ?, complete = 1, "
            "tokens = (SELECT coalesce(sum(token_end - token_start), 0) FROM chunks WHERE document_id = ?) "
            "WHERE id = ?",
            [digest, document_id, document_id],
        )


def mark_complete(db: sqlite_utils.Database, document_id: int) -> None:
    with writing(db):
        db.execute("UPDATE documents SET complete = 1 WHERE id = ?", [document_id])


def remove_document(db: sqlite_utils.Database, name: str, owner: User | None = None) -> None:
    """Delete the document (``owner``'s, when given); its chunks, their index entries and KV
    states go by cascade."""
    document = find_document(db, name)
    if document is None or owner is not None and document.user_id != owner.id:
        raise NotFound(f"no document named {name!r}; see: duetto docs list")
    with writing(db):
        db.execute("DELETE FROM documents WHERE id = ?", [document.id])


def reclaim_space(db: sqlite_utils.Database) -> bool:
    """Give the pages a removal freed back to the file system; False if another connection is busy.

    A document's saved model states run to megabytes, and SQLite only reuses freed pages: without
    this, removing documents never makes the file smaller.
    """
    try:
        db.vacuum()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:
        return False
    return True


_CHUNK_COLUMNS = (
    "id, document_id, position, text, token_start, token_end, compressed_text, compressed_tokens, "
    "embedding, model_sha256, file_path"
)


def list_chunks(db: sqlite_utils.Database, document_ids: Sequence[int]) -> list[Chunk]:
    if not document_ids:
        return []
    marks = ",".join("?" * len(document_ids))
    rows = db.execute(
        f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE document_id IN ({marks}) ORDER BY document_id, position",
        list(document_ids),
    ).fetchall()
    return [_chunk(row) for row in rows]


def get_chunk(db: sqlite_utils.Database, chunk_id: int) -> Chunk | None:
    row = db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id = ?", [chunk_id]).fetchone()
    return _chunk(row) if row else None


def _chunk(row: Sequence) -> Chunk:
    return Chunk(
        id=row[0],
        document_id=row[1],
        position=row[2],
        text=row[3],
        token_start=row[4],
        token_end=row[5],
        compressed_text=row[6] or "",
        compressed_tokens=row[7] or 0,
        embedding=np.frombuffer(row[8], dtype=np.float32) if row[8] else np.empty(0, dtype=np.float32),
        model_sha256=row[9] or "",
        file_path=row[10],
    )


def keyword_ranks(db: sqlite_utils.Database, document_ids: Sequence[int], query: str, limit: int = 50) -> list[int]:
    """Chunk ids by BM25 over the full-text index, best first; words of the query are OR-ed."""
    words = re.findall(r"\w+", query.lower())
    if not words or not document_ids:
        return []
    match = " OR ".join(f'"{word}"' for word in dict.fromkeys(words))
    marks = ",".join("?" * len(document_ids))
    rows = db.execute(
        f"SELECT c.id FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
        f"WHERE chunks_fts MATCH ? AND c.document_id IN ({marks}) ORDER BY bm25(chunks_fts) LIMIT ?",
        [match, *document_ids, limit],
    ).fetchall()
    return [row[0] for row in rows]


# --- the large model's KV state per chunk -----------------------------------------------------


def get_chunk_state(
    db: sqlite_utils.Database, chunk_id: int, model_sha256: str, variant: str, prefix_sha256: str
) -> bytes | None:
    row = db.execute(
        "SELECT state FROM chunk_states WHERE chunk_id = ? AND model_sha256 = ? AND variant = ? AND prefix_sha256 = ?",
        [chunk_id, model_sha256, variant, prefix_sha256],
    ).fetchone()
    return bytes(row[0]) if row else None


def put_chunk_state(
    db: sqlite_utils.Database,
    chunk_id: int,
    model_sha256: str,
    variant: str,
    prefix_sha256: str,
    token_count: int,
    state: bytes,
) -> None:
    with writing(db):
        db.execute(
            "INSERT OR REPLACE INTO chunk_states (chunk_id, model_sha256, variant, prefix_sha256, token_count, "
            "state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [chunk_id, model_sha256, variant, prefix_sha256, token_count, state, clock.now()],
        )


def chunks_with_state(
    db: sqlite_utils.Database, document_ids: Sequence[int], model_sha256: str, variant: str, prefix_sha256: str
) -> set[int]:
    """Ids of the documents' chunks whose ``variant`` has a saved state behind this prefix."""
    if not document_ids:
        return set()
    marks = ",".join("?" * len(document_ids))
    rows = db.execute(
        "SELECT s.chunk_id FROM chunk_states s JOIN chunks c ON c.id = s.chunk_id "
        f"WHERE c.document_id IN ({marks}) AND s.model_sha256 = ? AND s.variant = ? AND s.prefix_sha256 = ?",
        [*document_ids, model_sha256, variant, prefix_sha256],
    ).fetchall()
    return {row[0] for row in rows}


def chunk_state_bytes(db: sqlite_utils.Database, document_id: int) -> int:
    row = db.execute(
        "SELECT coalesce(sum(length(s.state)), 0) FROM chunk_states s JOIN chunks c ON c.id = s.chunk_id "
        "WHERE c.document_id = ?",
        [document_id],
    ).fetchone()
    return int(row[0])
