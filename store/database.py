"""Opening duetto's one SQLite database: created on first use, migrated on every open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from duetto.store import locations
from duetto.store.errors import StoreError
from duetto.store.migrations import migrate


def open_database(path: Path | None = None) -> sqlite_utils.Database:
    """Open (creating if needed) and migrate the database; use it only from this thread.

    WAL lets the TUI read while a worker writes; foreign keys make deletes cascade.
    """
    path = path or locations.database_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_utils.Database(path)
        db.execute("PRAGMA foreign_keys = ON")
        db.enable_wal()
        migrate(db)
    except (OSError, sqlite3.Error) as error:
        raise StoreError(f"cannot open the database {path}: {error}") from error
    return db
