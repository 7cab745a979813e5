"""A folder of code (or notes) as one document: read once, then kept up to date by content hash.

``scan_folder`` lists the files a user means: it respects every .gitignore in the tree (with
pathspec, git's own matching rules), skips .git and the usual dependency and cache directories,
and keeps what ``--glob`` patterns select. ``ingest_folder`` reads only the files whose content
changed since the last time (sha256 per file), drops the chunks of files that are gone, and cuts
code at its top-level definitions (engine/code_chunking.py). Code is never reworded: a code
chunk's compressed form is made of its own lines.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec
import sqlite_utils

from duetto.app.core.documents import InvalidDocument, decode_document
from duetto.engine.chunking import split_into_chunks
from duetto.engine.code_chunking import compressed_code, is_code_path, split_code_into_chunks
from duetto.engine.document_reader import DocumentReader
from duetto.store import documents as document_store
from duetto.store.conversations import User
from duetto.store.errors import StoreError

ALWAYS_SKIPPED = frozenset(
    {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache", ".pytest_cache",
     ".ruff_cache", ".idea", ".vscode"}
)  # fmt: skip
"""Directories never read, .gitignore or not: version control, dependencies, caches, editor state."""
MAX_FILE_BYTES = 1_000_000
"""A larger file in a folder is generated or data, not something to ask about: skipped, and said so."""
MAX_FOLDER_BYTES = 20_000_000
"""About 5M tokens: hours of reading for the small model. Narrow it with --glob."""


@dataclass(frozen=True)
class FolderFile:
    path: str
    """Relative to the folder, with '/' separators (what a citation shows)."""
    text: str
    sha256: str


@dataclass
class FolderScan:
    files: list[FolderFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, why) of files left out that a user might have expected in."""


def scan_folder(root: Path, globs: Sequence[str] = ()) -> FolderScan:
    """The folder's readable text files, by path, that .gitignore files do not exclude and the
    ``globs`` (gitignore-style patterns: ``*.py``, ``src/**/*.ts``) select when given."""
    if not root.is_dir():
        raise InvalidDocument(f"no such folder: {root}")
    wanted = pathspec.GitIgnoreSpec.from_lines(globs) if globs else None
    ignores: list[tuple[str, pathspec.GitIgnoreSpec]] = []  # (directory relative to root, its .gitignore)
    scan = FolderScan()
    total_bytes = 0
    for directory, subdirectories, file_names in os.walk(root):
        relative_dir = Path(directory).relative_to(root).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir
        gitignore = Path(directory) / ".gitignore"
        if gitignore.is_file():
            try:
                lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
                ignores.append((relative_dir, pathspec.GitIgnoreSpec.from_lines(lines)))
            except OSError as error:
                scan.skipped.append((_joined(relative_dir, ".gitignore"), f"unreadable: {error.strerror}"))
        subdirectories[:] = sorted(
            name for name in subdirectories
            if name not in ALWAYS_SKIPPED and not _ignored(ignores, _joined(relative_dir, name) + "/")
            and not (Path(directory) / name).is_symlink()
        )  # fmt: skip
        for name in sorted(file_names):
            path = _joined(relative_dir, name)
            full = Path(directory) / name
            if name == ".gitignore" or _ignored(ignores, path) or (wanted and not wanted.match_file(path)):
                continue
            if full.is_symlink() or not full.is_file():
                continue
            size = full.stat().st_size
            if size > MAX_FILE_BYTES:
                scan.skipped.append((path, f"{size / 1e6:.1f} MB, over {MAX_FILE_BYTES / 1e6:.0f} MB"))
                continue
            try:
                data = full.read_bytes()
                text = decode_document(data, path)
            except InvalidDocument as error:
                scan.skipped.append(
                    (path, "binary" if "binary" in str(error) else str(error).removeprefix(path).strip(" :"))
                )
                continue
            except OSError as error:
                scan.skipped.append((path, f"unreadable: {error.strerror}"))
                continue
            total_bytes += len(data)
            if total_bytes > MAX_FOLDER_BYTES:
                raise InvalidDocument(
                    f"{root} holds more than {MAX_FOLDER_BYTES / 1e6:.0f} MB of text; "
                    "pick the files to read with --glob (e.g. --glob '*.py')"
                )
            scan.files.append(FolderFile(path, text, hashlib.sha256(data).hexdigest()))
    return scan


def _joined(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _ignored(ignores: list[tuple[str, pathspec.GitIgnoreSpec]], path: str) -> bool:
    """Whether the .gitignore files above ``path`` exclude it, as git decides: each read relative
    to its own directory, the deepest one that has a say winning (so ``!keep.log`` in a
    subdirectory brings back what ``*.log`` at the root excluded)."""
    ignored = False
    for directory, spec in ignores:  # root first: os.walk visits parents before children
        if directory and not path.startswith(directory + "/"):
            continue
        verdict = spec.check_file(path[len(directory) + 1 :] if directory else path).include
        if verdict is not None:
            ignored = verdict
    return ignored


@dataclass(frozen=True)
class FolderResult:
    name: str
    files: int
    read: list[str]
    unchanged: int
    removed: list[str]
    skipped: list[tuple[str, str]]
    chunks: int
    tokens: int
    memory_tokens: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "files": self.files, "read": self.read, "unchanged": self.unchanged,
            "removed": self.removed, "skipped": [{"path": path, "why": why} for path, why in self.skipped],
            "chunks": self.chunks, "tokens": self.tokens, "memory_tokens": self.memory_tokens,
            "seconds": round(self.seconds, 3),
        }  # fmt: skip


def ingest_folder(
    db: sqlite_utils.Database,
    reader: DocumentReader,
    model_id: str,
    name: str,
    root: Path,
    globs: Sequence[str] = (),
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    owner: User | None = None,
) -> FolderResult:
    """Read the folder into the document ``name``, or bring it up to date: new and changed files
    are read, files that are gone lose their chunks, unchanged files cost nothing. Each chunk is
    committed alone and each file is recorded after its last chunk, so an interrupted read goes
    on from the file it was reading when run again."""
    started = time.perf_counter()
    scan = scan_folder(root, globs)
    if not scan.files:
        why = f" ({len(scan.skipped)} skipped: {scan.skipped[0][0]}: {scan.skipped[0][1]}, …)" if scan.skipped else ""
        raise InvalidDocument(f"{root}: no text files to read{why}")
    earlier = document_store.find_document(db, name)
    existing = document_store.list_chunks(db, [earlier.id]) if earlier is not None else []
    if existing and existing[0].model_sha256 != model_id:  # checked before the document is reopened
        raise StoreError(f"document {name!r} was read by another model; `duetto docs rm {name}` first")
    document = document_store.begin_folder(db, name, str(root.resolve()), owner)
    recorded = document_store.document_files(db, document.id)
    current = {file.path: file for file in scan.files}
    removed = sorted(path for path in recorded if path not in current)
    cut_short = document_store.chunk_file_paths(db, document.id) - set(recorded)
    to_read = [file for file in scan.files if recorded.get(file.path) != file.sha256]
    for path in {*removed, *cut_short, *(file.path for file in to_read)}:
        document_store.forget_file(db, document.id, path)
    planned = [(file, _chunks(file, reader)) for file in to_read]
    total = sum(len(chunks) for _, chunks in planned)
    done = 0
    if on_progress:
        on_progress(done, total)
    position, offset = document_store.next_chunk_place(db, document.id)
    for file, chunks in planned:
        for text, compressed in chunks:
            if should_cancel and should_cancel():
                raise InterruptedError(f"reading {name!r} was cancelled; run it again to continue")
            reading = reader.read(text)
            if compressed is None:
                compressed, compressed_tokens = reading.compressed_text, reading.compressed_tokens
            else:
                compressed_tokens = reader.count_tokens(compressed)
            document_store.add_chunk(
                db, document.id, position, text, (offset, offset + reading.tokens), compressed, compressed_tokens,
                reading.embedding, model_id, file_path=file.path,
            )  # fmt: skip
            position, offset, done = position + 1, offset + reading.tokens, done + 1
            if on_progress:
                on_progress(done, total)
        document_store.record_file(db, document.id, file.path, file.sha256, len(chunks))
    document_store.finish_folder(db, document.id)
    finished = document_store.get_document(db, name, owner)
    return FolderResult(
        name=name, files=len(scan.files), read=[file.path for file in to_read],
        unchanged=len(scan.files) - len(to_read),
        removed=removed, skipped=scan.skipped, chunks=finished.chunk_count, tokens=finished.tokens,
        memory_tokens=finished.memory_tokens, seconds=time.perf_counter() - started,
    )  # fmt: skip


def _chunks(file: FolderFile, reader: DocumentReader) -> list[tuple[str, str | None]]:
    """(chunk text, its compressed form or None for the small model's) of one file; each chunk
    opens with the file's path, so that the large model knows where an excerpt comes from and
    a search for a file's name finds it."""
    header = f"File {file.path}:\n"
    if is_code_path(file.path):
        return [
            (header + chunk.text, header + compressed_code(chunk.text, file.path))
            for chunk in split_code_into_chunks(file.text, reader.count_tokens, path=file.path)
        ]
    return [(header + chunk.text, None) for chunk in split_into_chunks(file.text, reader.count_tokens)]
