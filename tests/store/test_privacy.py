"""What duetto keeps of people is readable by them alone (issue 20, item 5)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from duetto_cli import run_duetto

from duetto.store.conversations import add_message, create_conversation, ensure_user
from duetto.store.database import open_database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_is_0700_and_the_database_and_its_wal_are_0600(isolated_duetto: Path) -> None:
    assert not isolated_duetto.exists()
    db = open_database()
    conversation = create_conversation(db, ensure_user(db), "private")
    add_message(db, conversation.id, "user", "my secrets")

    assert mode(isolated_duetto) == 0o700
    files = sorted(isolated_duetto.glob("duetto.db*"))
    assert [path.name for path in files] == ["duetto.db", "duetto.db-shm", "duetto.db-wal"]
    assert all(mode(path) == 0o600 for path in files), {path.name: oct(mode(path)) for path in files}


def test_the_server_will_not_listen_beyond_this_machine_without_an_api_key(tiny_models: dict[str, Path]) -> None:
    refused = run_duetto("serve", "--host", "0.0.0.0", "--port", "0", "--target", str(tiny_models["target"]))
    assert refused.returncode == 2 and "--api-key" in refused.stderr and refused.stderr.count("\n") == 1
    assert "loading" not in refused.stderr.lower(), "refused before any model loads"
    assert os.environ.get("DUETTO_API_KEY") is None
    assert "[default: 127.0.0.1]" in " ".join(run_duetto("serve", "--help").stdout.split())
