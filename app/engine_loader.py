"""Building a Decoder from what the user named: a profile, or explicit model files.

Missing manifest models are fetched first (with progress on the terminal), and a
draft/target pair is checked for compatibility before either is loaded, so an
incompatible pair fails at once with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from duetto.app.console import RichByteProgress, stderr_console
from duetto.app.model_catalog import resolve_model_path
from duetto.engine.decoder import Decoder
from duetto.engine.document_reader import DocumentReader
from duetto.engine.errors import EngineError
from duetto.engine.fetch import fetch_model, is_present
from duetto.engine.manifest import ModelSpec, load_manifest
from duetto.engine.model_session import ModelSession
from duetto.engine.pairing import check_pair
from duetto.engine.plugin_session import PersonalisedSession, personalise
from duetto.store import locations
from duetto.store.conversations import DEFAULT_USER, ensure_user, get_user, validate_user_name
from duetto.store.database import open_database
from duetto.store.pair_checks import load_pair_check, save_pair_check

READER_CONTEXT_LENGTH = 1024
"""Enough for one chunk or one question: the reader never holds more."""


def chosen_model_names(
    profile: str | None, target: str | None, draft: str | None, use_draft: bool
) -> tuple[str, str | None]:
    """(target name, draft name or None) from a profile and explicit choices.

    A target named explicitly drafts with nothing but lookup unless a draft model is named too:
    the profile's draft is only known to fit the profile's target.
    """
    manifest = load_manifest()
    chosen = manifest.profile(profile or manifest.default_profile)
    target_name = target or chosen.target
    draft_name = (draft or (None if target else chosen.draft)) if use_draft else None
    return target_name, draft_name


def missing_models(names: list[str | None]) -> list[ModelSpec]:
    """The manifest models among ``names`` whose files are not in the models directory yet."""
    manifest = load_manifest()
    models_dir = locations.models_dir()
    specs = [manifest.models[name] for name in names if name in manifest.models]
    return [spec for spec in specs if not is_present(spec, models_dir)]


def fetch_with_progress_bars(specs: list[ModelSpec]) -> None:
    if not specs:
        return
    models_dir = locations.models_dir()
    stderr_console.print(f"first use: fetching {', '.join(spec.name for spec in specs)} into {models_dir}")
    with RichByteProgress() as progress:
        for spec in specs:
            fetch_model(spec, models_dir, progress)


def resolve_paths(target_name: str, draft_name: str | None) -> tuple[Path, Path | None]:
    manifest = load_manifest()
    db = open_database()
    target_path = resolve_model_path(target_name, manifest, db, locations.models_dir())
    draft_path = resolve_model_path(draft_name, manifest, db, locations.models_dir()) if draft_name else None
    return target_path, draft_path


def model_paths(
    profile: str | None, target: str | None, draft: str | None, use_draft: bool
) -> tuple[Path, Path | None]:
    """(target path, draft path or None), fetching missing manifest models with progress bars first."""
    target_name, draft_name = chosen_model_names(profile, target, draft, use_draft)
    fetch_with_progress_bars(missing_models([target_name, draft_name]))
    return resolve_paths(target_name, draft_name)


def user_plugin_dir(user: str) -> Path:
    """The directory of a known user's plugin; the default user is created on first use.

    Raises NotFound (a StoreError) for a user nobody added.
    """
    db = open_database()
    found = ensure_user(db, DEFAULT_USER) if user == DEFAULT_USER else get_user(db, validate_user_name(user))
    return locations.user_dir(found.name)


def open_target(
    target_path: Path, *, context_length: int, threads: int | None = None, user: str | None = None
) -> ModelSession | PersonalisedSession:
    """The target model, carrying ``user``'s plugin when they have one (an unknown user fails first)."""
    plugin_dir = user_plugin_dir(user) if user is not None else None
    target = ModelSession(target_path, context_length=context_length, threads=threads)
    if plugin_dir is not None:
        try:
            return personalise(target, plugin_dir)
        except EngineError:
            target.close()
            raise
    return target


def checked_pair(draft_path: Path, target_path: Path) -> tuple[bool, list[str]]:
    """(compatible, problems) for the pair, from the database when these very files were checked
    before (check_pair reads both vocabularies: about 1 s, measured); checked and kept otherwise."""
    db = open_database()
    known = load_pair_check(db, draft_path, target_path)
    if known is not None:
        return known
    pair = check_pair(draft_path, target_path)
    save_pair_check(db, draft_path, target_path, pair.compatible, pair.problems)
    return pair.compatible, pair.problems


def build_decoder(
    target_path: Path,
    draft_path: Path | None,
    *,
    context_length: int,
    threads: int | None = None,
    user: str | None = None,
) -> Decoder:
    """Check the pair, then load both models; prints nothing (the TUI calls it from a thread).

    With ``user``, the target carries that user's plugin (when they have one): the decoder then
    verifies drafts against the personalised target. Switching users means building a new decoder.
    """
    if draft_path is not None:
        compatible, problems = checked_pair(draft_path, target_path)
        if not compatible:
            raise EngineError(f"{draft_path.name} cannot draft for {target_path.name}: {problems[0]}")
    target = open_target(target_path, context_length=context_length, threads=threads, user=user)
    draft = ModelSession(draft_path, context_length=context_length, threads=threads) if draft_path else None
    return Decoder(target, draft)


def load_decoder(
    target_path: Path,
    draft_path: Path | None,
    *,
    context_length: int,
    threads: int | None = None,
    user: str | None = None,
) -> Decoder:
    """``build_decoder`` with a spinner on the terminal."""
    with stderr_console.status(f"loading {target_path.name}" + (f" and {draft_path.name}" if draft_path else "")):
        return build_decoder(target_path, draft_path, context_length=context_length, threads=threads, user=user)


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


def reader_for(path: Path, *, threads: int | None = None) -> tuple[DocumentReader, str]:
    """``path`` loaded as a document reader, and the model identity its memory is stored under."""
    from duetto.app.document_memory import model_fingerprint

    return DocumentReader(ModelSession(path, context_length=READER_CONTEXT_LENGTH, threads=threads)), model_fingerprint(
        path
    )


def lazy_compressor(model_path: Path, *, threads: int | None = None) -> Callable[[str], str]:
    """Text compression by ``model_path`` (the small model when there is one), loaded on first
    use: most chats never fold, and those that do should not wait for it at start."""
    reader: DocumentReader | None = None

    def compress(text: str) -> str:
        nonlocal reader
        if reader is None:
            reader, _ = reader_for(model_path, threads=threads)
        return reader.compress_text(text)

    return compress
