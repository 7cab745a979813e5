"""Ordered schema steps, each applied once and recorded by name.

A released step is never edited: a change to the schema is a new step appended
to ``MIGRATIONS``. ``tests/store/test_migrations.py`` checks the resulting
columns on a fresh database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from duetto.store import clock
from duetto.store.conversations import DEFAULT_USER

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


@migration
def m003_settings_chunk_states_attachments(db: sqlite_utils.Database) -> None:
    """Per-user settings, each chunk's compressed length, the large model's KV state per chunk, documents attached to a
    conversation, the compressed memory of a long conversation, and a full-text index of chunks.

    ``chunk_states`` is keyed by the prompt prefix the chunk was evaluated after (its sha256),
    because a KV state is only valid behind the same tokens at the same positions.
    ``chunks_fts`` is an external-content FTS5 index kept in step with ``chunks`` by triggers
    (foreign-key cascades fire them too), used next to the embeddings to rank chunks.
    """
    _execute_statements(
        db,
        """
        ALTER TABLE chunks ADD COLUMN compressed_tokens INTEGER;
        CREATE TABLE user_settings (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
        );
        CREATE TABLE chunk_states (
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            model_sha256 TEXT NOT NULL,
            variant TEXT NOT NULL,
            prefix_sha256 TEXT NOT NULL,
            token_count INTEGER NOT NULL,
            state BLOB NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (chunk_id, model_sha256, variant, prefix_sha256)
        );
        CREATE TABLE conversation_documents (
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            PRIMARY KEY (conversation_id, document_id)
        );
        CREATE TABLE conversation_memory (
            conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
            through_message_id INTEGER NOT NULL,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id');
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
        CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
        END
        """,
    )


@migration
def m004_pair_checks(db: sqlite_utils.Database) -> None:
    """Draft/target pair checks already made, keyed on each file's path, size and modification
    time: reading two 151k-token vocabularies in Python cost ~1 s of every fresh ``duetto ask``."""
    db["pair_checks"].create(
        {"draft_key": str, "target_key": str, "compatible": int, "problems": str, "checked_at": str},
        pk=("draft_key", "target_key"),
    )


@migration
def m005_drop_memory_states(db: sqlite_utils.Database) -> None:
    """Whole-document KV states (m002) were never written: the large model's saved states are
    per chunk (chunk_states, m003), so that a question loads only the chunks it picks."""
    db.execute("DROP TABLE IF EXISTS memory_states")


@migration
def m006_document_owners(db: sqlite_utils.Database) -> None:
    """Each document belongs to the user who added it, so that a user (a request's ``user`` on
    ``duetto serve`` above all) reaches only their own; documents added before belong to the
    default user. Names stay unique on the machine (changing the column's UNIQUE would mean
    rebuilding the table under the chunks that reference it)."""
    db.execute("ALTER TABLE documents ADD COLUMN user_id INTEGER REFERENCES users(id) ON DELETE CASCADE")
    if db.execute("SELECT count(*) FROM documents").fetchone()[0]:
        db.execute("INSERT OR IGNORE INTO users (name, created_at) VALUES (?, ?)", [DEFAULT_USER, clock.now()])
        db.execute("UPDATE documents SET user_id = (SELECT id FROM users WHERE name = ?)", [DEFAULT_USER])


@migration
def m007_chat_prompts_and_search(db: sqlite_utils.Database) -> None:
    """A conversation's own system prompt and settings (NULL: the profile's), saved system
    prompts per user (personas), and a full-text index of every message, kept in step with
    ``messages`` by triggers as ``chunks_fts`` is with chunks (m003)."""
    _execute_statements(
        db,
        """
        ALTER TABLE conversations ADD COLUMN system_prompt TEXT;
        ALTER TABLE conversations ADD COLUMN settings TEXT;
        CREATE TABLE personas (
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            prompt TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, name)
        );
        CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id');
        INSERT INTO messages_fts(rowid, content) SELECT id, content FROM messages;
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END
        """,
    )


@migration
def m008_document_files(db: sqlite_utils.Database) -> None:
    """Documents read from a folder: the file each chunk came from and each file's content hash,
    so that adding the folder again rereads only the files that changed and drops the chunks of
    files that are gone. A file's row is written after its last chunk: a file with chunks but
    no row was cut short, and is read again."""
    _execute_statements(
        db,
        """
        ALTER TABLE chunks ADD COLUMN file_path TEXT;
        CREATE TABLE document_files (
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            chunks INTEGER NOT NULL,
            PRIMARY KEY (document_id, path)
        )
        """,
    )


@migration
def m009_remote_targets(db: sqlite_utils.Database) -> None:
    """Targets served elsewhere (``duetto models add-remote``): an OpenAI-compatible endpoint, the
    model id to ask for, and the name of the environment variable that holds its key (the key
    itself is never stored)."""
    db["remote_targets"].create(
        {"name": str, "url": str, "model": str, "api_key_env": str, "added_at": str},
        pk="name",
        not_null={"url", "added_at"},
    )


def _execute_statements(db: sqlite_utils.Database, script: str) -> None:
    """Run DDL one statement at a time: executescript would commit mid-migration.

    Pieces between ``;`` are joined until SQLite calls them complete, so a trigger's
    ``BEGIN ... END`` body stays one statement.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                db.execute(pending)
            pending = ""


class NewerSchema(Exception):
    """The database has a step this duetto does not know: a newer duetto wrote it (the step's name)."""


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the steps not yet recorded, each in its own transaction; returns their names. A
    database with a step this duetto does not know is left as it is (NewerSchema)."""
    if not db[MIGRATIONS_TABLE].exists():
        db[MIGRATIONS_TABLE].create({"name": str, "applied_at": str}, pk="name")
    applied = {row["name"] for row in db[MIGRATIONS_TABLE].rows}
    unknown = sorted(applied - {step.__name__ for step in MIGRATIONS})
    if unknown:
        raise NewerSchema(unknown[-1])
    newly_applied = []
    for step in MIGRATIONS:
        if step.__name__ in applied:
            continue
        # An explicit transaction: Python's sqlite3 would run DDL in autocommit mode, and a crash
        # between a step and its record must not leave the step half-applied.
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db[MIGRATIONS_TABLE].insert({"name": step.__name__, "applied_at": clock.now()})
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        newly_applied.append(step.__name__)
    return newly_applied
