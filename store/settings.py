"""Per-user settings: JSON values in ``user_settings``, one row per key.

Two layers: ``get_setting``/``set_setting`` read and write any JSON value under a key (other
features keep their own keys beside the chat's), and ``ChatSettings`` gathers the chat app's
decoding choices into one validated value, read over the caller's defaults so that a key never
saved keeps the default the caller chose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import sqlite_utils

from duetto.store.conversations import User
from duetto.store.errors import StoreError

MODES = ("target", "exact", "fast")
DRAFTERS = ("auto", "model", "lookup", "none")
MAX_TEMPERATURE = 5.0
MAX_REPLY_TOKENS = 32768


class InvalidSetting(StoreError):
    """A setting's value is out of range or of the wrong kind; the message names the setting."""


@dataclass(frozen=True)
class ChatSettings:
    """What the chat app lets a user choose; field names match the engine's DecodeSettings."""

    mode: str = "exact"
    temperature: float = 0.0
    max_tokens: int = 1024
    drafter: str = "auto"
    fallback_threshold: float = 0.6
    rollback_threshold: float = 5.0
    max_draft_run: int = 24
    show_draft_sources: bool = False
    """Colour the text the draft wrote (a view of the chat, not a decoding choice)."""

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("drafter", self.drafter, DRAFTERS)
        _check_number("temperature", self.temperature, 0.0, MAX_TEMPERATURE)
        _check_integer("max_tokens", self.max_tokens, 1, MAX_REPLY_TOKENS)
        _check_number("fallback_threshold", self.fallback_threshold, 0.0, 1.0)
        _check_number("rollback_threshold", self.rollback_threshold, 0.0, None)
        _check_integer("max_draft_run", self.max_draft_run, 0, None)
        if not isinstance(self.show_draft_sources, bool):
            raise InvalidSetting(f"show_draft_sources must be true or false, not {self.show_draft_sources!r}")

    def decoding(self) -> dict[str, Any]:
        """The fields that are DecodeSettings fields, for ``dataclasses.replace``."""
        values = asdict(self)
        del values["show_draft_sources"]
        return values


CHAT_KEYS = tuple(field.name for field in fields(ChatSettings))


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


def get_setting(db: sqlite_utils.Database, user: User, key: str, default: Any = None) -> Any:
    """The JSON value stored under ``key`` for ``user``, or ``default`` when none is."""
    rows = list(db["user_settings"].rows_where("user_id = ? AND key = ?", [user.id, key]))
    if not rows:
        return default
    try:
        return json.loads(rows[0]["value"])
    except json.JSONDecodeError as error:
        raise InvalidSetting(f"the stored setting {key!r} of user {user.name!r} is not JSON: {error}") from error


def set_setting(db: sqlite_utils.Database, user: User, key: str, value: Any) -> None:
    """Store ``value`` (anything JSON can hold) under ``key`` for ``user``, replacing an older one."""
    set_settings(db, user, {key: value})


def set_settings(db: sqlite_utils.Database, user: User, values: dict[str, Any]) -> None:
    """Store several values at once, in one transaction."""
    try:
        rows = [{"user_id": user.id, "key": key, "value": json.dumps(value)} for key, value in values.items()]
    except (TypeError, ValueError) as error:
        raise InvalidSetting(f"a setting must be a JSON value: {error}") from error
    with db.conn:
        db["user_settings"].upsert_all(rows, pk=("user_id", "key"))


def load_chat_settings(db: sqlite_utils.Database, user: User, defaults: ChatSettings | None = None) -> ChatSettings:
    """The user's saved chat settings over ``defaults``; raises InvalidSetting naming a bad stored value."""
    defaults = defaults or ChatSettings()
    rows = db["user_settings"].rows_where(
        f"user_id = ? AND key IN ({', '.join('?' for _ in CHAT_KEYS)})", [user.id, *CHAT_KEYS]
    )
    stored: dict[str, Any] = {}
    for row in rows:
        try:
            stored[row["key"]] = json.loads(row["value"])
        except json.JSONDecodeError as error:
            raise InvalidSetting(f"the stored setting {row['key']!r} is not JSON: {error}") from error
    try:
        return ChatSettings(**{**asdict(defaults), **stored})
    except InvalidSetting as error:
        raise InvalidSetting(f"a saved setting of user {user.name!r} is invalid: {error}") from error


def save_chat_settings(db: sqlite_utils.Database, user: User, settings: ChatSettings) -> None:
    """Store every chat setting (the value was validated when it was built)."""
    set_settings(db, user, asdict(settings))
