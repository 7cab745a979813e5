"""The database file from outside: a newer duetto's, a damaged one, two processes writing at once
(issue 20, items 2 and 3)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from duetto_cli import run_duetto

from duetto.store.conversations import create_conversation, ensure_user, list_messages
from duetto.store.database import open_database
from duetto.store.errors import StoreError


def test_a_database_from_a_newer_duetto_is_named_and_left_as_it_is(isolated_duetto: Path) -> None:
    open_database()
    database = isolated_duetto / "duetto.db"
    with sqlite3.connect(database) as connection:
        connection.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', 'later')")
    before = dump(database)

    with pytest.raises(StoreError, match="written by a newer duetto .*m999_from_the_future.*upgrade duetto"):
        open_database()
    result = run_duetto("chats", "list")
    assert result.returncode == 1 and str(database) in result.stderr and result.stderr.count("\n") == 1
    assert dump(database) == before, "never a silent rewrite"


def dump(database: Path) -> list[str]:
    """Every table's schema and rows (the file's bytes change when SQLite checkpoints its WAL)."""
    with sqlite3.connect(database) as connection:
        return list(connection.iterdump())


def test_a_damaged_database_is_a_one_line_error_naming_the_file(isolated_duetto: Path) -> None:
    isolated_duetto.mkdir(parents=True)
    database = isolated_duetto / "duetto.db"
    database.write_bytes(b"this is not SQLite" * 300)
    before = database.read_bytes()

    result = run_duetto("chats", "list")

    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"cannot open the database {database}" in result.stderr and "Traceback" not in result.stderr
    assert database.read_bytes() == before


WRITER = """
import sys
from duetto.store.conversations import add_message
from duetto.store.database import open_database
db = open_database()
for index in range(int(sys.argv[2])):
    add_message(db, int(sys.argv[1]), "user", f"writer {sys.argv[3]} message {index}")
"""


def test_processes_writing_one_database_at_once_lose_nothing(isolated_duetto: Path) -> None:
    db = open_database()
    conversation = create_conversation(db, ensure_user(db), "shared")
    holder = sqlite3.connect(isolated_duetto / "duetto.db")
    holder.execute("BEGIN IMMEDIATE")  # another duetto in the middle of a write
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(conversation.id), "60", str(number)], env=os.environ.copy())
        for number in range(4)
    ]
    time.sleep(1.5)
    holder.rollback()  # the writers waited (busy timeout), not failed
    holder.close()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]

    texts = [message.content for message in list_messages(db, conversation.id)]
    assert len(texts) == len(set(texts)) == 240
    with sqlite3.connect(isolated_duetto / "duetto.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_home_that_is_a_file_says_which_file_is_in_the_way(isolated_duetto: Path, below: str) -> None:
    isolated_duetto.parent.mkdir(parents=True, exist_ok=True)
    isolated_duetto.write_text("notes")
    home = isolated_duetto / below if below else isolated_duetto

    result = run_duetto("chats", "list", env={"DUETTO_HOME": str(home)})

    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"{isolated_duetto} is a file, not a directory; set DUETTO_HOME" in result.stderr
    assert isolated_duetto.read_text() == "notes"
