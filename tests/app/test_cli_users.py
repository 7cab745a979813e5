import json
from pathlib import Path

from duetto_cli import run_duetto


def users_json() -> dict:
    result = run_duetto("users", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_default_user_is_always_listed() -> None:
    data = users_json()

    assert data["default_user"] == "default"
    assert data["users"] == [{"name": "default", "plugin": None, "plugin_bytes": 0}]


def test_add_list_and_remove_a_user(isolated_duetto: Path) -> None:
    assert run_duetto("users", "add", "alice").returncode == 0
    assert [user["name"] for user in users_json()["users"]] == ["alice", "default"]
    weights = isolated_duetto / "users" / "alice" / "side-plugin.npz"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")

    result = run_duetto("users", "rm", "alice")

    assert result.returncode == 0, result.stderr
    assert [user["name"] for user in users_json()["users"]] == ["default"]
    assert not weights.parent.exists(), "removing a user removes their weights"


def test_user_errors_are_one_line() -> None:
    run_duetto("users", "add", "bob")
    for arguments, message in [
        (("users", "add", "bob"), "user 'bob' already exists"),
        (("users", "add", "../evil"), "invalid user name"),
        (("users", "rm", "nobody"), "no user named 'nobody'"),
        (("users", "rm", "default"), "cannot be removed"),
    ]:
        result = run_duetto(*arguments)
        assert result.returncode == 1, arguments
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
