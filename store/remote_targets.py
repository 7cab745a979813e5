"""Targets on a serving engine, registered by ``duetto models add-remote``: where, which model,
and which environment variable holds the key (never the key itself)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from duetto.store import clock
from duetto.store.errors import NameTaken, NotFound
from duetto.store.transactions import writing


@dataclass(frozen=True)
class RemoteTargetRecord:
    name: str
    url: str
    model: str | None = None
    api_key_env: str | None = None


def add_remote_target(db: sqlite_utils.Database, record: RemoteTargetRecord, *, replace: bool = False) -> None:
    if not replace and db["remote_targets"].count_where("name = ?", [record.name]):
        raise NameTaken(f"a remote target named {record.name!r} exists already (use --replace)")
    with writing(db):
        db["remote_targets"].upsert(
            {"name": record.name, "url": record.url, "model": record.model,
             "api_key_env": record.api_key_env, "added_at": clock.now()},
            pk="name",
        )  # fmt: skip


def _record(row: dict) -> RemoteTargetRecord:
    return RemoteTargetRecord(row["name"], row["url"], row["model"], row["api_key_env"])


def list_remote_targets(db: sqlite_utils.Database) -> list[RemoteTargetRecord]:
    return [_record(row) for row in db["remote_targets"].rows_where(order_by="name")]


def find_remote_target(db: sqlite_utils.Database, name: str) -> RemoteTargetRecord | None:
    rows = list(db["remote_targets"].rows_where("name = ?", [name]))
    return _record(rows[0]) if rows else None


def remove_remote_target(db: sqlite_utils.Database, name: str) -> None:
    if find_remote_target(db, name) is None:
        raise NotFound(f"no remote target named {name!r}; see: duetto models list")
    with writing(db):
        db["remote_targets"].delete(name)
