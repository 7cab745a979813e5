"""Opening duetto's one SQLite database: created on first use, migrated on every open."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from duetto.store import locations
from duetto.store.errors import StoreError, storage_failure
from duetto.store.migrations import NewerSchema, migrate

BUSY_SECONDS = 30.0
"""How long a write waits while another duetto (the chat app, a `docs add`, the server) writes the
same database, before it fails; each of their transactions is one chunk, one message or one
setting, so a wait is milliseconds."""
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def open_database(path: Path | None = None) -> sqlite_utils.Database:
    """Open (creating if needed) and migrate the database; use it only from this thread.

    WAL lets the TUI read while a worker writes; foreign keys make deletes cascade. The database
    holds people's conversations: its directory is made readable by its owner alone (0700) and
    the file created 0600, which SQLite gives its -wal and -shm files too.
    """
    path = path or locations.database_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIRECTORY)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
        # IMMEDIATE: a write takes the write lock first, waiting up to BUSY_SECONDS for another
        # duetto's. A deferred one read first (an insert's full-text trigger reads the index's
        # config), and SQLite cannot wait on a reader's upgrade: "database is locked" at once.
        db = sqlite_utils.Database(sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level="IMMEDIATE"))
        db.execute("PRAGMA foreign_keys = ON")
        db.enable_wal()
        migrate(db)
    except NewerSchema as error:
        raise StoreError(
            f"{path} was written by a newer duetto (schema step {error}, unknown to this one): "
            "upgrade duetto to open it; nothing was changed"
        ) from None
    except (FileExistsError, NotADirectoryError):
        in_the_way = (folder for folder in [path.parent, *path.parent.parents]
                      if (folder.exists() or folder.is_symlink()) and not folder.is_dir())  # fmt: skip
        blocker = next(in_the_way, path.parent)
        kind = "a broken link" if blocker.is_symlink() and not blocker.exists() else "a file"
        raise StoreError(
            f"cannot open the database {path}: {blocker} is {kind}, not a directory; "
            "set DUETTO_HOME to a directory (or move it)"
        ) from None
    except (OSError, sqlite3.Error) as error:
        raise storage_failure(error, path) or StoreError(f"cannot open the database {path}: {error}") from error
    return db
