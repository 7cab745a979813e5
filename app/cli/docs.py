"""``duetto docs``: read documents into memory, list, show and remove them."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from duetto.app.cli.console import human_bytes, print_json, stderr_console, stdout_console
from duetto.app.cli.loading import load_reader, local_only, model_paths
from duetto.app.core.documents import InvalidDocument, decode_document, ingest_document
from duetto.app.core.folders import ingest_folder
from duetto.app.core.models import open_target
from duetto.app.core.plugins import chunks_learnt_by_plugin, forget_document_readings
from duetto.app.core.questions import PREPARE_CONTEXT_LENGTH, prepare_documents
from duetto.app.core.wording import plural, shorten
from duetto.store import documents as document_store
from duetto.store.conversations import DEFAULT_USER, User, named_user
from duetto.store.database import open_database
from duetto.store.errors import NotFound

PREVIEW_CHARACTERS = 200
PROGRESS_LINE_SECONDS = 5.0
"""Without a terminal, progress is a line this often (and at the end)."""


@click.group()
def docs() -> None:
    """Documents kept as memory: the small model reads each once; `duetto ask --doc NAME` answers from it."""


@docs.command("add")
@click.argument("path")
@click.option(
    "--name", default=None, help="Name to ask about it by (default: the file or folder name without extension)."
)
@click.option(
    "--glob",
    "globs",
    multiple=True,
    metavar="PATTERN",
    help="For a folder: read only files matching this gitignore-style pattern ('*.py', 'src/**/*.ts'); repeatable.",
)
@click.option("--profile", default=None, help="Model profile whose draft model reads the document.")
@click.option("--model", default=None, metavar="MODEL|PATH", help="Small model to read with instead of the profile's.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads (default: all cores).")
@click.option(
    "--prepare", is_flag=True, help="Then have the large model read every chunk once (see `duetto docs prepare`)."
)
@click.option(
    "--target", default=None, metavar="MODEL|PATH", help="With --prepare: large model instead of the profile's."
)
@click.option(
    "--user",
    default=DEFAULT_USER,
    show_default=True,
    help="Whose document it is (only they can ask about it); with --prepare, whose plugin the large model carries.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"name","tokens","chunks","memory_tokens","seconds"} (and "prepare" with --prepare); for a '
    'folder also "files","read","unchanged","removed","skipped".',
)
def add_document(
    path: str,
    name: str | None,
    globs: tuple[str, ...],
    profile: str | None,
    model: str | None,
    threads: int | None,
    prepare: bool,
    target: str | None,
    user: str,
    as_json: bool,
) -> None:
    """Read PATH (plain text, Markdown or PDF; '-' for stdin; or a folder) into document memory.

    A folder becomes one document: every text file not excluded by a .gitignore (or only those
    --glob selects), code cut at its top-level definitions. Add the folder again to bring it up
    to date: only files whose content changed are read; deleted files' chunks go.

    Interrupted? Run the same command again: it continues where it stopped.
    """
    if path != "-" and Path(path).is_dir():
        _add_folder(Path(path), name, globs, profile, model, threads, prepare, target, user, as_json)
        return
    if globs:
        raise click.UsageError("--glob selects files in a folder; PATH is not a folder")
    if path == "-":
        if name is None:
            raise click.UsageError("reading from stdin needs --name")
        data = sys.stdin.buffer.read()
        label, source = "stdin", None
    else:
        file = Path(path)
        if not file.is_file():
            raise click.BadParameter(f"no such file: {path}", param_hint="PATH")
        data = file.read_bytes()
        label, source = str(file), str(file.resolve())
        if name is None:
            name = file.stem
    text = decode_document(data, label)
    db = open_database()
    owner = named_user(db, user)
    document_store.validate_document_name(name)
    existing = document_store.find_document(db, name)
    if existing is not None and existing.complete and existing.user_id == owner.id:
        if existing.sha256 != hashlib.sha256(text.encode("utf-8")).hexdigest():
            raise InvalidDocument(
                f"a document named {name!r} already exists with other content; pick another --name "
                "or `duetto docs rm` it"
            )
        # The same text read in before (the run that read it was killed before it said so, or the
        # user ran the command twice): nothing to read; an interrupted --prepare goes on.
        report = {
            "name": existing.name,
            "tokens": existing.tokens,
            "chunks": existing.chunk_count,
            "memory_tokens": existing.memory_tokens,
            "seconds": 0.0,
            "unchanged": True,
        }
        if not as_json:
            stderr_console.print(f"{name}: already read, unchanged ({plural(existing.chunk_count, 'chunk')})")
        if prepare:
            report["prepare"] = _prepare(db, [name], profile, target, owner, threads, as_json)
        if as_json:
            print_json(report)
        return
    reader, model_id = load_reader(profile, model, threads=threads)
    with _progress_bar("reading", name, "chunks", quiet=as_json) as show:
        result = ingest_document(db, reader, model_id, name, text, source=source, on_progress=show, owner=owner)
    reader.session.close()
    resumed = f", {plural(result.resumed_chunks, 'chunk')} kept from an earlier run" if result.resumed_chunks else ""
    if not as_json:
        stderr_console.print(
            f"{result.name}: {plural(result.tokens, 'token')} in {plural(result.chunks, 'chunk')}, "
            f"memory {plural(result.memory_tokens, 'token')} "
            f"compressed, {result.seconds:.1f} s{resumed}"
        )
    _report(db, result.as_json(), name, prepare, profile, target, owner, threads, as_json)


def _add_folder(
    folder: Path, name: str | None, globs: tuple[str, ...], profile: str | None, model: str | None,
    threads: int | None, prepare: bool, target: str | None, user: str, as_json: bool,
) -> None:  # fmt: skip
    """``docs add FOLDER``: read it in, or bring an earlier read up to date."""
    name = folder.resolve().name if name is None else name
    db = open_database()
    owner = named_user(db, user)
    document_store.validate_document_name(name)
    reader, model_id = load_reader(profile, model, threads=threads)
    with _progress_bar("reading", name, "chunks", quiet=as_json) as show:
        result = ingest_folder(db, reader, model_id, name, folder, globs, on_progress=show, owner=owner)
    reader.session.close()
    if not as_json:
        binary = [path for path, why in result.skipped if why == "binary"]
        for path, why in [skipped for skipped in result.skipped if skipped[1] != "binary"]:
            stderr_console.print(f"skipped {path}: {why}", markup=False)
        if binary:
            stderr_console.print(f"skipped {plural(len(binary), 'binary file')} ({', '.join(binary[:3])}"
                                 f"{', …' if len(binary) > 3 else ''})", markup=False)  # fmt: skip
        removed = f", {plural(len(result.removed), 'file')} gone" if result.removed else ""
        stderr_console.print(
            f"{result.name}: {plural(result.files, 'file')} ({len(result.read)} read, {result.unchanged} unchanged"
            f"{removed}), {plural(result.chunks, 'chunk')}, {plural(result.tokens, 'token')}, "
            f"memory {plural(result.memory_tokens, 'token')}, {result.seconds:.1f} s"
        )
    _report(db, result.as_json(), name, prepare, profile, target, owner, threads, as_json)


def _report(
    db, report: dict, name: str, prepare: bool, profile: str | None, target: str | None, owner: User,
    threads: int | None, as_json: bool,
) -> None:  # fmt: skip
    """After a read: prepare it when asked (``--prepare``), and print the report with ``--json``."""
    if prepare:
        report["prepare"] = _prepare(db, [name], profile, target, owner, threads, as_json)
    if as_json:
        print_json(report)


@docs.command("prepare")
@click.argument("names", nargs=-1, required=True)
@click.option("--profile", default=None, help="Model profile whose large model will answer (default: default).")
@click.option("--target", default=None, metavar="MODEL|PATH", help="Large model instead of the profile's.")
@click.option(
    "--user",
    default=DEFAULT_USER,
    show_default=True,
    help="Whose documents; their plugin is what the large model carries while reading (a LoRA adapter changes "
    "what it keeps).",
)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads (default: all cores).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"names","chunks","prepared_chunks","evaluated_tokens","seconds","state_bytes"}.',
)
def prepare_command(
    names: tuple[str, ...],
    profile: str | None,
    target: str | None,
    user: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Have the large model read every chunk of NAMES once and keep its state, so that every
    question afterwards starts at once: it reads only itself.

    Without it, a chunk's state is kept the first time a question uses it. Costs one reading of
    each document, whole and compressed, by the large model, and about 30 KB per token read on
    disk for the default 1.5B model (`duetto docs show` tells). Interrupted? Run it again.

    A user with an imported LoRA adapter (`duetto plugin import`) asks with a changed model: prepare
    for them with --user NAME (a side plugin changes nothing the model keeps: no need).
    """
    db = open_database()
    report = _prepare(db, list(names), profile, target, named_user(db, user), threads, as_json)
    if as_json:
        print_json(report)


@contextmanager
def _progress_bar(verb: str, what: str, unit: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A transient bar on stderr; yields the on_progress(done, total) callback to feed it. Without
    a terminal (a pipe, a log), a line every ``PROGRESS_LINE_SECONDS`` instead: a bar there is
    only blank lines."""
    if not stderr_console.is_terminal:
        last_line = 0.0

        def line(done: int, total: int) -> None:
            nonlocal last_line
            now = time.monotonic()
            if not quiet and (now - last_line >= PROGRESS_LINE_SECONDS or done == total):
                last_line = now
                stderr_console.print(f"{verb} {what}: {done}/{plural(total, unit.removesuffix('s'))}")

        yield line
        return
    with Progress(
        TextColumn(f"[bold]{verb} {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=True,
    ) as progress:
        task = progress.add_task(what, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _owned(db, name: str, owner: User):
    """``owner``'s document ``name`` (complete or not): another user's is not found."""
    document = document_store.find_document(db, name)
    if document is None or document.user_id != owner.id:
        raise NotFound(f"no document named {name!r}; see: duetto docs list")
    return document


def _prepare(
    db, names: list[str], profile: str | None, target: str | None, owner: User, threads: int | None, quiet: bool
) -> dict:
    documents = []
    names = list(dict.fromkeys(names))
    for name in names:
        document = _owned(db, name, owner)
        if not document.complete:
            raise InvalidDocument(f"{name!r} is not fully read yet; run `duetto docs add` for it again first")
        documents.append(document)
    target_path = local_only(
        model_paths(profile, target, None, False)[0], "docs prepare (the large model's saved states)"
    )
    session = open_target(target_path, context_length=PREPARE_CONTEXT_LENGTH, threads=threads, user=owner.name)
    try:
        with _progress_bar("preparing", ", ".join(names), "blocks", quiet=quiet) as show:
            result = prepare_documents(db, session, documents, on_progress=show)
    finally:
        session.close()
    if not quiet:
        stderr_console.print(
            f"prepared {result.prepared_chunks} of {plural(result.chunks, 'chunk')} "
            f"({plural(result.evaluated_tokens, 'token')} read) in "
            f"{result.seconds:.1f} s; saved model state {human_bytes(result.state_bytes)}"
        )
    return result.as_json()


@docs.command("list")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="Whose documents.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def list_documents(user: str, as_json: bool) -> None:
    """List a user's stored documents."""
    db = open_database()
    owner = named_user(db, user)
    documents = document_store.list_documents(db, owner)
    learnt = chunks_learnt_by_plugin(db, owner.name, documents)
    if as_json:
        print_json(
            [
                {
                    "name": document.name,
                    "tokens": document.tokens,
                    "chunks": document.chunk_count,
                    "memory_tokens": document.memory_tokens,
                    "complete": document.complete,
                    "created_at": document.created_at,
                    "source": document.source,
                    "chunks_learnt_by_plugin": None if learnt is None else learnt[document.id],
                }
                for document in documents
            ]
        )
        return
    if not documents:
        stderr_console.print("no documents yet; add one with: duetto docs add FILE")
        return
    columns = ["name", "tokens", "chunks", "memory tokens", "added", "state"]
    table = Table(*columns, *(["learnt by plugin"] if learnt is not None else []))
    for document in documents:
        row = [
            document.name,
            str(document.tokens),
            str(document.chunk_count),
            str(document.memory_tokens),
            document.created_at[:16].replace("T", " "),
            "ready" if document.complete else "unfinished: run docs add again",
        ]
        if learnt is not None:
            row.append(_learnt_share(learnt[document.id], document.chunk_count))
        table.add_row(*row)
    stdout_console.print(table)


def _learnt_share(learnt: int, chunks: int) -> str:
    return "all" if learnt >= chunks else f"{learnt} of {chunks} chunks"


@docs.command("show")
@click.argument("name")
@click.option("--chunk", "position", type=int, default=None, help="Print this chunk whole (text and compressed).")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="Whose document.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def show_document(name: str, position: int | None, user: str, as_json: bool) -> None:
    """Show a document's chunks (or one chunk whole with --chunk N)."""
    db = open_database()
    owner = named_user(db, user)
    document = _owned(db, name, owner)
    chunks = document_store.list_chunks(db, [document.id])
    if position is not None:
        chunks = [chunk for chunk in chunks if chunk.position == position]
        if not chunks:
            raise click.BadParameter(f"{name!r} has no chunk {position}", param_hint="--chunk")
    state_bytes = document_store.chunk_state_bytes(db, document.id)
    learnt = chunks_learnt_by_plugin(db, owner.name, [document])
    if as_json:
        print_json(
            {
                "name": document.name,
                "tokens": document.tokens,
                "memory_tokens": document.memory_tokens,
                "complete": document.complete,
                "saved_state_bytes": state_bytes,
                "chunks_learnt_by_plugin": None if learnt is None else learnt[document.id],
                "chunks": [
                    {
                        "position": chunk.position,
                        "tokens": chunk.tokens,
                        "compressed_tokens": chunk.compressed_tokens,
                        "text": chunk.text,
                        "compressed_text": chunk.compressed_text,
                    }
                    for chunk in chunks
                ],
            }
        )
        return
    stderr_console.print(
        f"[bold]{document.name}[/bold]: {plural(document.tokens, 'token')}, "
        f"{plural(document.chunk_count, 'chunk')}, memory "
        f"{plural(document.memory_tokens, 'token')}, saved model state {human_bytes(state_bytes)}"
        + (f", learnt by {owner.name}'s plugin: {_learnt_share(learnt[document.id], document.chunk_count)}"
           if learnt is not None else "")
    )  # fmt: skip
    if learnt is not None and document.complete and learnt[document.id] < document.chunk_count:
        stderr_console.print(f"to learn the rest: duetto plugin train --user {owner.name} --docs", highlight=False)
    for chunk in chunks:
        if position is not None:
            stdout_console.print(f"[bold]#{chunk.position}[/bold] ({chunk.tokens} tokens)", highlight=False)
            stdout_console.print(chunk.text, markup=False, highlight=False)
            stdout_console.print(f"\n[bold]compressed[/bold] ({chunk.compressed_tokens} tokens)", highlight=False)
            stdout_console.print(chunk.compressed_text, markup=False, highlight=False)
        else:
            preview = shorten(chunk.text, PREVIEW_CHARACTERS)
            stdout_console.print(f"[bold]#{chunk.position}[/bold] {preview}", highlight=False)


@docs.command("rm")
@click.argument("name")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="Whose document.")
def remove_document(name: str, user: str) -> None:
    """Remove a document with its chunks and saved model states, and shrink the database file."""
    db = open_database()
    owner = named_user(db, user)
    document = document_store.find_document(db, name)
    if document is not None and document.user_id == owner.id:
        forget_document_readings(db, document)  # the readings a plugin kept of it hold its text
    document_store.remove_document(db, name, owner)
    if document_store.reclaim_space(db):
        stderr_console.print(f"removed {name}")
    else:
        stderr_console.print(f"removed {name}; the database is in use, so its file shrinks on a later removal")
