from pathlib import Path

import sqlite_utils

from duetto.store.database import open_database
from duetto.store.migrations import MIGRATIONS, MIGRATIONS_TABLE, migrate


def test_a_fresh_database_gets_every_step_once() -> None:
    db = sqlite_utils.Database(memory=True)

    applied = migrate(db)

    assert applied == [step.__name__ for step in MIGRATIONS]
    assert migrate(db) == []
    assert [row["name"] for row in db[MIGRATIONS_TABLE].rows] == applied
    assert db["imported_models"].columns_dict == {
        "name": str,
        "path": str,
        "size": int,
        "sha256": str,
        "architecture": str,
        "imported_at": str,
    }


def test_open_database_uses_wal_and_foreign_keys(isolated_duetto: Path) -> None:
    db = open_database()

    assert db.journal_mode == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert (isolated_duetto / "duetto.db").is_file()
