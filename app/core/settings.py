"""The chat's decoding choices as one validated value, over the engine's own definitions.

The modes, the drafter names and every default come from the engine (``MODES``,
``DRAFTER_CHOICES``, ``DecodeSettings``); the store keeps the values under generic keys
(store/settings.py) and knows nothing of what they mean. A key never saved keeps the default
the caller chose (the command line's, in the chat app).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import sqlite_utils

from duetto.engine.decoder import DecodeSettings
from duetto.engine.drafters import DRAFTER_CHOICES
from duetto.engine.stats import MODES
from duetto.store.conversations import User
from duetto.store.settings import InvalidSetting, get_settings, set_settings

MAX_TEMPERATURE = 5.0
MAX_REPLY_TOKENS = 32768
CHAT_MAX_TOKENS = 1024
"""A chat reply's default limit; ``duetto ask`` keeps the engine's shorter one (DecodeSettings)."""


@dataclass(frozen=True)
class ChatSettings:
    """What the chat app lets a user choose; field names match the engine's DecodeSettings."""

    mode: str = DecodeSettings.mode
    temperature: float = DecodeSettings.temperature
    max_tokens: int = CHAT_MAX_TOKENS
    drafter: str = DecodeSettings.drafter
    fallback_threshold: float = DecodeSettings.fallback_threshold
    rollback_threshold: float = DecodeSettings.rollback_threshold
    max_draft_run: int = DecodeSettings.max_draft_run
    show_draft_sources: bool = False
    """Colour the text the draft wrote (a view of the chat, not a decoding choice)."""

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("drafter", self.drafter, DRAFTER_CHOICES)
        _check_number("temperature", self.temperature, 0.0, MAX_TEMPERATURE)
        _check_integer("max_tokens", self.max_tokens, 1, MAX_REPLY_TOKENS)
        _check_number("fallback_threshold", self.fallback_threshold, 0.0, 1.0)
        _check_number("rollback_threshold", self.rollback_threshold, 0.0, None)
        _check_integer("max_draft_run", self.max_draft_run, 0, None)
        if not isinstance(self.show_draft_sources, bool):
            raise InvalidSetting(f"show_draft_sources must be true or false, not {self.show_draft_sources!r}")

    @classmethod
    def of(cls, settings: DecodeSettings) -> ChatSettings:
        """The chat settings a DecodeSettings value holds."""
        return cls(**{name: getattr(settings, name) for name in DECODING_KEYS})

    def decoding(self) -> dict[str, Any]:
        """The fields that are DecodeSettings fields, for ``dataclasses.replace``."""
        return {name: getattr(self, name) for name in DECODING_KEYS}

    def applied_to(self, settings: DecodeSettings) -> DecodeSettings:
        return replace(settings, **self.decoding())


CHAT_KEYS = tuple(field.name for field in fields(ChatSettings))
DECODING_KEYS = tuple(name for name in CHAT_KEYS if name in DecodeSettings.__dataclass_fields__)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidSetting(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _check_number(name: str, value: Any, low: float, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidSetting(f"{name} must be a number, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise InvalidSetting(f"{name} must be {bounds}, not {value:g}")


def _check_integer(name: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSetting(f"{name} must be a whole number, not {value!r}")
    _check_number(name, value, low, high)


def load_chat_settings(db: sqlite_utils.Database, user: User, defaults: ChatSettings | None = None) -> ChatSettings:
    """The user's saved chat settings over ``defaults``; raises InvalidSetting naming a bad stored value."""
    defaults = defaults or ChatSettings()
    stored = get_settings(db, user, CHAT_KEYS)
    try:
        return ChatSettings(**{**asdict(defaults), **stored})
    except InvalidSetting as error:
        raise InvalidSetting(f"a saved setting of user {user.name!r} is invalid: {error}") from error


def conversation_chat_settings(stored: dict[str, Any] | None, defaults: ChatSettings) -> ChatSettings | None:
    """The chat settings a conversation kept (``conversations.settings["chat"]``) over ``defaults``;
    None when it kept none. Raises InvalidSetting naming a bad value."""
    chat = (stored or {}).get("chat")
    if not isinstance(chat, dict):
        return None
    known = {key: value for key, value in chat.items() if key in CHAT_KEYS}
    return ChatSettings(**{**asdict(defaults), **known})


def save_chat_settings(db: sqlite_utils.Database, user: User, settings: ChatSettings) -> None:
    """Store every chat setting (the value was validated when it was built)."""
    set_settings(db, user, asdict(settings))
