"""What the chat app needs from whoever builds it (app/tui/factory.py, the tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from duetto.app.core.models import Engine, ModelPair
from duetto.engine.decoder import DecodeSettings
from duetto.engine.manifest import ModelSpec


@dataclass(frozen=True)
class ChatConfig:
    """Everything the app needs from its caller; tests build one with tiny models."""

    engine_factory: Callable[[str], Engine]
    """Builds the engine for the user named; called in a thread worker."""
    models_label: str
    settings: DecodeSettings = DecodeSettings()
    """The defaults; a user's saved settings (store.settings) replace them field by field."""
    command_line_settings: frozenset[str] = frozenset()
    """Fields of ``settings`` given on the command line: they win over saved ones for this session."""
    user_name: str = "default"
    engine_per_user: bool = False
    """The engine depends on the user (their plugin): switching user rebuilds it."""
    database_path: Path | None = None
    missing_models: tuple[ModelSpec, ...] = ()
    """Manifest models to fetch (in a screen with progress bars) before the engine can load."""
    window_tokens: int | None = None
    """Tokens of a conversation kept whole before folding (None: the whole context)."""
    pair: ModelPair | None = None
    """The models ``engine_factory`` loads; None: the app cannot switch pairs (a test's engine)."""
    pair_engine_factory: Callable[[str, ModelPair], Engine] | None = None
    """Builds the engine of another pair for a user (a conversation that remembers its own)."""
    pair_choices: Callable[[], list[tuple[str, ModelPair]]] | None = None
    """(profile name, pair) of the pairs whose models are on this machine, for the models dialog."""
