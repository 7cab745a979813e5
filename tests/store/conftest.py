import pytest
import sqlite_utils

from duetto.store.migrations import migrate


@pytest.fixture
def db() -> sqlite_utils.Database:
    """A migrated in-memory database with foreign keys on, as open_database makes them."""
    database = sqlite_utils.Database(memory=True)
    database.execute("PRAGMA foreign_keys = ON")
    migrate(database)
    return database
