"""Loading models for a user: which files a profile names, and the engine built from them.

A draft/target pair is checked for compatibility before either is loaded, so an incompatible
pair fails at once with the reason. Nothing here prints: the CLI adds progress bars and
spinners (app/cli/loading.py), the chat app its own screens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from duetto.app.core.fingerprints import model_fingerprint
from duetto.app.core.model_catalog import resolve_model_path
from duetto.engine.decoder import Decoder
from duetto.engine.document_reader import DocumentReader
from duetto.engine.errors import EngineError
from duetto.engine.fetch import is_present
from duetto.engine.manifest import ModelSpec, load_manifest
from duetto.engine.model_session import ModelSession
from duetto.engine.pairing import check_pair
from duetto.engine.plugin_files import plugin_file_signature
from duetto.engine.plugin_session import PersonalisedSession, personalise
from duetto.store import locations
from duetto.store.conversations import named_user
from duetto.store.database import open_database
from duetto.store.pair_checks import load_pair_check, save_pair_check

READER_CONTEXT_LENGTH = 1024
"""Enough for one chunk or one question: the reader never holds more."""


@dataclass(frozen=True)
class ModelPair:
    """A target and the draft model that drafts for it (None: lookup drafting only), by the names
    a user gives (manifest or imported names, or file paths); what a conversation remembers."""

    target: str
    draft: str | None = None

    @property
    def label(self) -> str:
        return f"{_short(self.draft)} → {_short(self.target)}" if self.draft else _short(self.target)

    def as_dict(self) -> dict[str, str | None]:
        return {"target": self.target, "draft": self.draft}

    @classmethod
    def from_dict(cls, data: object) -> ModelPair | None:
        """The pair a conversation stored, or None when what is stored is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("target"), str):
            return None
        draft = data.get("draft")
        return cls(data["target"], draft if isinstance(draft, str) else None)


def _short(name_or_path: str) -> str:
    """A model's name as given; a file path's stem."""
    return Path(name_or_path).stem if name_or_path.endswith(".gguf") else name_or_path


def available_pairs() -> list[tuple[str, ModelPair]]:
    """(profile, pair) of the manifest's profiles whose model files are on this machine."""
    manifest = load_manifest()
    return [
        (profile.name, ModelPair(profile.target, profile.draft))
        for profile in manifest.profiles.values()
        if not missing_models([profile.target, profile.draft])
    ]


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


def resolve_paths(target_name: str, draft_name: str | None) -> tuple[Path, Path | None]:
    manifest = load_manifest()
    db = open_database()
    target_path = resolve_model_path(target_name, manifest, db, locations.models_dir())
    draft_path = resolve_model_path(draft_name, manifest, db, locations.models_dir()) if draft_name else None
    return target_path, draft_path


def user_plugin_dir(user: str, database_path: Path | None = None) -> Path:
    """The directory of a known user's plugin; the default user is created on first use.

    Raises NotFound (a StoreError) for a user nobody added (to the database at ``database_path``).
    """
    return locations.user_dir(named_user(open_database(database_path), user).name)


def open_target(
    target_path: Path,
    *,
    context_length: int | None,
    threads: int | None = None,
    user: str | None = None,
    database_path: Path | None = None,
) -> ModelSession | PersonalisedSession:
    """The target model, carrying ``user``'s plugin when they have one (an unknown user fails first)."""
    plugin_dir = user_plugin_dir(user, database_path) if user is not None else None
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
    context_length: int | None,
    threads: int | None = None,
    user: str | None = None,
    database_path: Path | None = None,
    decoder_class: type[Decoder] = Decoder,
) -> Decoder:
    """Check the pair, then load both models; prints nothing (the TUI calls it from a thread).

    With ``user``, the target carries that user's plugin (when they have one): the decoder then
    verifies drafts against the personalised target. Switching users means building a new decoder.
    """
    if draft_path is not None:
        compatible, problems = checked_pair(draft_path, target_path)
        if not compatible:
            raise EngineError(f"{draft_path.name} cannot draft for {target_path.name}: {problems[0]}")
    target = open_target(
        target_path, context_length=context_length, threads=threads, user=user, database_path=database_path
    )
    draft = ModelSession(draft_path, context_length=context_length, threads=threads) if draft_path else None
    return decoder_class(target, draft)


def reader_for(path: Path, *, threads: int | None = None) -> tuple[DocumentReader, str]:
    """``path`` loaded as a document reader, and the model identity its memory is stored under."""
    return DocumentReader(ModelSession(path, context_length=READER_CONTEXT_LENGTH, threads=threads)), model_fingerprint(
        path
    )


class Engine:
    """A user's models as a front-end holds them: the decoder, and the small model as a document
    reader and compressor, loaded on first use (most chats never read a document or fold, and
    should not wait for it at start). Safe to share between a front-end's threads."""

    def __init__(
        self,
        decoder: Decoder,
        reader_factory: Callable[[], tuple[DocumentReader, str]] | None = None,
    ) -> None:
        self.decoder = decoder
        self.where = "this machine"
        """Where the target runs, for the status bar and stats lines (a remote target's name and URL)."""
        self.notes: list[str] = []
        """What a front-end should tell the user about this engine (a plugin a remote target ignores)."""
        self._reader_factory = reader_factory
        self._reader: tuple[DocumentReader, str] | None = None
        self._reader_lock = threading.Lock()
        self._plugin_dir: Path | None = None
        self._plugin_signature: tuple | None = None

    @property
    def has_draft_model(self) -> bool:
        return self.decoder.draft is not None

    @property
    def is_remote(self) -> bool:
        """Whether the target runs on a serving engine, which drafts for itself: duetto's modes
        (exact, fast, target) do not apply to it."""
        return self.where != "this machine"

    def follow_plugin(self, directory: Path, signature: tuple | None) -> None:
        """Have ``refresh_plugin`` keep the target's plugin that of ``directory``, taken up when the
        plugin file had ``signature`` (``plugin_file_signature``, read before it was loaded)."""
        self._plugin_dir, self._plugin_signature = directory, signature

    def refresh_plugin(self) -> str | None:
        """Carry the user's plugin as it is on disk now, when it changed since the target took it up:
        a ``plugin train``, ``import`` or ``rm`` while the chat app or the server runs. Only the
        plugin is swapped; the model stays loaded. Returns what changed, for the user; None when
        nothing did. Call between replies, on the thread that decodes."""
        if self._plugin_dir is None:
            return None
        signature = plugin_file_signature(self._plugin_dir)
        if signature == self._plugin_signature:
            return None
        self._plugin_signature = signature
        target = self.decoder.target
        plain = target.detach() if isinstance(target, PersonalisedSession) else target
        try:
            personalised = personalise(plain, self._plugin_dir)
        except EngineError as error:
            self.decoder.use_target(plain)
            return f"the plugin changed on disk and cannot be used ({error}); answering without it"
        self.decoder.use_target(personalised)
        if personalised is plain:  # removed, perhaps since the signature was read
            return "the plugin was removed: answering without it"
        return "the plugin changed on disk: answering with the new one"

    @property
    def can_read_documents(self) -> bool:
        return self._reader_factory is not None

    def reader(self) -> tuple[DocumentReader, str]:
        """The document reader and the model id its memory is stored under; loaded once."""
        with self._reader_lock:
            if self._reader is None:
                if self._reader_factory is None:
                    raise EngineError("no small model to read documents with")
                self._reader = self._reader_factory()
            return self._reader

    def compress_text(self, text: str) -> str:
        """The small model's compression of ``text`` (folding old turns of a chat)."""
        return self.reader()[0].compress_text(text)

    def close(self) -> None:
        """Free the models' memory now rather than when the garbage collector gets to it."""
        for session in (self.decoder.target, self.decoder.draft):
            if session is not None:
                session.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader[0].session.close()
                self._reader = None


def load_engine(target_path: Path, draft_path: Path | None, *, threads: int | None = None, **options) -> Engine:
    """The engine for these files: the decoder (``build_decoder``'s options; the target carrying
    ``user``'s plugin) now, the reader (the small model, else the target's file) when first asked for."""
    user = options.get("user")
    plugin_dir = user_plugin_dir(user, options.get("database_path")) if user is not None else None
    signature = plugin_file_signature(plugin_dir) if plugin_dir is not None else None
    decoder = build_decoder(target_path, draft_path, threads=threads, **options)
    engine = Engine(decoder, lambda: reader_for(draft_path or target_path, threads=threads))
    if plugin_dir is not None:
        engine.follow_plugin(plugin_dir, signature)
    return engine
