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


@migration
def m002_users_conversations_documents(db: sqlite_utils.Database) -> None:
    """Users, their conversations and messages (with each reply's stats), documents and their memory.

    Plain SQL because sqlite-utils cannot declare ON DELETE CASCADE, which is what makes deleting
    a user, conversation or document remove everything that hangs from it.
    """
    _execute_statements(
        db,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX conversations_by_user ON conversations(user_id, updated_at);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            stats TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT,
            sha256 TEXT NOT NULL,
            tokens INTEGER,
            complete INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            token_start INTEGER NOT NULL,
            token_end INTEGER NOT NULL,
            compressed_text TEXT,
            embedding BLOB,
            model_sha256 TEXT,
            UNIQUE (document_id, position)
        );
        CREATE TABLE memory_states (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            model_sha256 TEXT NOT NULL,
            token_count INTEGER NOT NULL,
            state BLOB NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (document_id, model_sha256)
        );
        """,
    )


def _execute_statements(db: sqlite_utils.Database, script: str) -> None:
    """Run ``;``-separated DDL one statement at a time: executescript would commit mid-migration."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the steps not yet recorded, each in its own transaction; returns their names."""
    if not db[MIGRATIONS_TABLE].exists():
        db[MIGRATIONS_TABLE].create({"name": str, "applied_at": str}, pk="name")
    applied = {row["name"] for row in db[MIGRATIONS_TABLE].rows}
    newly_applied = []
    for step in MIGRATIONS:
        if step.__name__ in applied:
            continue
        # An explicit transaction: Python's sqlite3 would run DDL in autocommit mode, and a crash
        # between a step and its record must not leave the step half-applied.
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db[MIGRATIONS_TABLE].insert(
                {"name": step.__name__, "applied_at": dt.datetime.now(dt.timezone.utc).isoformat()}
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        newly_applied.append(step.__name__)
    return newly_applied
