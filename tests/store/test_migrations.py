from pathlib import Path

import pytest
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


def test_the_second_step_creates_the_chat_and_document_tables() -> None:
    db = sqlite_utils.Database(memory=True)
    migrate(db)

    assert set(db["messages"].columns_dict) == {"id", "conversation_id", "role", "content", "stats", "created_at"}
    assert set(db["chunks"].columns_dict) == {
        "id", "document_id", "position", "text", "token_start", "token_end", "compressed_text", "embedding",
        "model_sha256", "compressed_tokens", "file_path",
    }  # fmt: skip
    assert not db["memory_states"].exists(), "created by the second step, dropped unused by the fifth"
    assert "ON DELETE CASCADE" in db["chunks"].schema and "ON DELETE CASCADE" in db["messages"].schema


def test_a_failing_step_leaves_nothing_behind(monkeypatch) -> None:
    db = sqlite_utils.Database(memory=True)

    def m999_broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half_done (id INTEGER)")
        raise RuntimeError("power cut")

    monkeypatch.setattr("duetto.store.migrations.MIGRATIONS", [*MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError, match="power cut"):
        migrate(db)
    assert "half_done" not in db.table_names()
    assert "m999_broken" not in {row["name"] for row in db[MIGRATIONS_TABLE].rows}
    assert "users" in db.table_names(), "the steps before it stay applied"


def test_the_chunk_index_follows_inserts_and_cascading_deletes() -> None:
    db = sqlite_utils.Database(memory=True)
    db.execute("PRAGMA foreign_keys = ON")
    migrate(db)
    db.execute("INSERT INTO documents (name, sha256, created_at) VALUES ('d', 'x', 'now')")
    db.execute(
        "INSERT INTO chunks (document_id, position, text, token_start, token_end) "
        "VALUES (1, 0, 'the lighthouse keeper', 0, 3)"
    )

    assert db.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'lighthouse'").fetchall() == [(1,)]
    db.execute("DELETE FROM documents")
    assert db.execute("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'lighthouse'").fetchall() == []


def test_the_message_index_is_built_for_messages_kept_before_it_and_follows_edits(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "old.db")
    db.execute("PRAGMA foreign_keys = ON")
    monkeypatched = [step for step in MIGRATIONS if step.__name__ < "m007"]
    db[MIGRATIONS_TABLE].create({"name": str, "applied_at": str}, pk="name")
    for step in monkeypatched:  # a database from before the index
        step(db)
        db[MIGRATIONS_TABLE].insert({"name": step.__name__, "applied_at": "then"})
    db.execute("INSERT INTO users (name, created_at) VALUES ('u', 'then')")
    db.execute("INSERT INTO conversations (user_id, title, created_at, updated_at) VALUES (1, 't', 'then', 'then')")
    db.execute(
        "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'old words', 'then')"
    )

    migrate(db)

    def found(word: str) -> list:
        return db.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", [word]).fetchall()

    assert found("old") == [(1,)]
    db.execute("UPDATE messages SET content = 'new words' WHERE id = 1")
    assert found("old") == [] and found("new") == [(1,)]
    db.execute("DELETE FROM conversations")
    assert found("new") == []


def test_pair_checks_are_kept_per_file_and_forgotten_when_a_file_changes(tmp_path: Path) -> None:
    from duetto.store.pair_checks import load_pair_check, save_pair_check

    db = sqlite_utils.Database(memory=True)
    migrate(db)
    draft, target = tmp_path / "draft.gguf", tmp_path / "target.gguf"
    draft.write_bytes(b"a")
    target.write_bytes(b"b")

    assert load_pair_check(db, draft, target) is None
    save_pair_check(db, draft, target, False, ["vocabulary sizes differ"])
    assert load_pair_check(db, draft, target) == (False, ["vocabulary sizes differ"])
    target.write_bytes(b"bigger")
    assert load_pair_check(db, draft, target) is None
