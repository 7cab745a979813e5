"""Per-user settings: JSON values in ``user_settings``, one row per key.

Generic on purpose: what a key means, its default and its valid values belong to the feature
that uses it (the chat's decoding choices: app/core/settings.py); the store only keeps values.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from duetto.store.conversations import User
from duetto.store.errors import StoreError
from duetto.store.transactions import writing


class InvalidSetting(StoreError):
    """A setting's value is out of range, of the wrong kind, or not JSON; the message names it."""


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
    with writing(db):
        db["user_settings"].upsert_all(rows, pk=("user_id", "key"))


def get_settings(db: sqlite_utils.Database, user: User, keys: tuple[str, ...]) -> dict[str, Any]:
    """The JSON values stored under any of ``keys`` for ``user`` (keys never saved are absent)."""
    rows = db["user_settings"].rows_where(f"user_id = ? AND key IN ({', '.join('?' for _ in keys)})", [user.id, *keys])
    stored: dict[str, Any] = {}
    for row in rows:
        try:
            stored[row["key"]] = json.loads(row["value"])
        except json.JSONDecodeError as error:
            raise InvalidSetting(f"the stored setting {row['key']!r} is not JSON: {error}") from error
    return stored
