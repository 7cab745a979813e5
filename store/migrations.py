"""Ordered schema steps, each applied once and recorded by name.

A released step is never edited: a change to the schema is a new step appended
to ``MIGRATIONS``. ``tests/store/test_migrations.py`` checks the resulting
columns on a fresh database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[Migration] = []
MIGRATIONS_TABLE = "_migrations"


def migration(step: Migration) -> Migration:
    MIGRATIONS.append(step)
    return step


@migration
def m001_imported_models(db: sqlite_utils.Database) -> None:
    """GGUF files a user registered with ``duetto models import``; the file stays where it is."""
    db["imported_models"].create(
        {
            "name": str,
            "path": str,
            "size": int,
            "sha256": str,
            "architecture": str,
            "imported_at": str,
        },
        pk="name",
    )


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the steps not yet recorded, each in its own transaction; returns their names."""
    if not db[MIGRATIONS_TABLE].exists():
        db[MIGRATIONS_TABLE].create({"name": str, "applied_at": str}, pk="name")
    applied = {row["name"] for row in db[MIGRATIONS_TABLE].rows}
    newly_applied = []
    for step in MIGRATIONS:
        if step.__name__ in applied:
            continue
        with db.conn:
            step(db)
            db[MIGRATIONS_TABLE].insert(
                {"name": step.__name__, "applied_at": dt.datetime.now(dt.timezone.utc).isoformat()}
            )
        newly_applied.append(step.__name__)
    return newly_applied
