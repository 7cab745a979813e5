"""Loading models from the command line: fetching missing ones with progress bars, a spinner
while they load. The choices themselves are app/core/models.py's."""

from __future__ import annotations

from pathlib import Path

from duetto.app.cli.console import RichByteProgress, stderr_console
from duetto.app.core.models import (
    Engine,
    build_decoder,
    chosen_model_names,
    missing_models,
    reader_for,
    resolve_paths,
)
from duetto.app.core.models import load_engine as build_engine
from duetto.app.core.remote import build_remote_engine, remote_endpoint
from duetto.engine.decoder import Decoder
from duetto.engine.document_reader import DocumentReader
from duetto.engine.errors import EngineError
from duetto.engine.fetch import fetch_model
from duetto.engine.manifest import ModelSpec
from duetto.engine.remote_target import RemoteEndpoint
from duetto.store import locations


def fetch_with_progress_bars(specs: list[ModelSpec]) -> None:
    if not specs:
        return
    models_dir = locations.models_dir()
    stderr_console.print(f"first use: fetching {', '.join(spec.name for spec in specs)} into {models_dir}")
    with RichByteProgress() as progress:
        for spec in specs:
            fetch_model(spec, models_dir, progress)


def model_paths(
    profile: str | None, target: str | None, draft: str | None, use_draft: bool
) -> tuple[Path | RemoteEndpoint, Path | None]:
    """(target path, draft path or None), fetching missing manifest models with progress bars first.
    A remote target (``duetto models add-remote``) comes back as its endpoint, with the local
    small model that writes its prompts: ``draft``, else the profile's."""
    endpoint = remote_endpoint(target)
    if endpoint is not None:
        draft_name = draft or chosen_model_names(profile, None, None, True)[1]
        fetch_with_progress_bars(missing_models([draft_name]))
        return endpoint, resolve_paths(draft_name, None)[0] if draft_name else None
    target_name, draft_name = chosen_model_names(profile, target, draft, use_draft)
    fetch_with_progress_bars(missing_models([target_name, draft_name]))
    return resolve_paths(target_name, draft_name)


def local_only(target_path: Path | RemoteEndpoint, what: str) -> Path:
    """``target_path`` when it is a file here; a one-line error naming ``what`` for a remote target."""
    if isinstance(target_path, RemoteEndpoint):
        raise EngineError(f"{what} works on a large model on this machine; {target_path.name} is a remote target")
    return target_path


def _loading(target_path: Path, draft_path: Path | None):
    return stderr_console.status(f"loading {target_path.name}" + (f" and {draft_path.name}" if draft_path else ""))


def load_decoder(target_path: Path | RemoteEndpoint, draft_path: Path | None, **options) -> Decoder:
    """The core's ``build_decoder`` (same options) with a spinner on the terminal (for a remote
    target, the decoder that asks it)."""
    if isinstance(target_path, RemoteEndpoint):
        return load_engine(target_path, draft_path, **options).decoder
    with _loading(target_path, draft_path):
        return build_decoder(target_path, draft_path, **options)


def load_engine(target_path: Path | RemoteEndpoint, draft_path: Path | None, **options) -> Engine:
    """The core's ``load_engine`` (same options) with a spinner on the terminal; for a remote
    target, the engine that asks it (the context length is the server's), and its notes said."""
    if isinstance(target_path, RemoteEndpoint):
        with stderr_console.status(f"reaching {target_path.name} at {target_path.url}"):
            engine = build_remote_engine(
                target_path, draft_path, threads=options.get("threads"), user=options.get("user"),
                database_path=options.get("database_path"),
            )  # fmt: skip
        for note in engine.notes:
            stderr_console.print(f"[yellow]note:[/yellow] {note}")
        return engine
    with _loading(target_path, draft_path):
        return build_engine(target_path, draft_path, **options)


def load_reader(
    profile: str | None, model: str | None = None, *, threads: int | None = None
) -> tuple[DocumentReader, str]:
    """The small model (``model``, else the profile's draft) as a document reader, and its identity."""
    name = model or chosen_model_names(profile, None, None, True)[1]
    if name is None:
        raise EngineError("reading documents needs a small model: use a profile with a draft model, or --model")
    fetch_with_progress_bars(missing_models([name]))
    path, _ = resolve_paths(name, None)
    with stderr_console.status(f"loading {path.name}"):
        return reader_for(path, threads=threads)
