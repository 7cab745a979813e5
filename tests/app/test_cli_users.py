import json
from pathlib import Path

import pytest
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


@pytest.mark.parametrize(
    "command",
    [
        ["ask", "--user", "nobody", "hi"],
        ["serve", "--user", "nobody"],
        ["chats", "list", "--user", "nobody"],
        ["docs", "list", "--user", "nobody"],
        ["users", "rm", "nobody"],
    ],
)
def test_an_unknown_user_is_the_same_one_line_and_exit_code_everywhere(isolated_duetto: Path, command) -> None:
    result = run_duetto(*command)

    assert (result.returncode, result.stderr) == (1, "duetto: error: no user named 'nobody'; see: duetto users list\n")


@pytest.mark.parametrize(("first", "second"), [("Alice", "alice"), (None, "DEFAULT")])
def test_a_name_differing_only_in_case_is_refused(isolated_duetto: Path, first: str | None, second: str) -> None:
    """Each user's plugin has a folder named after them: on a file system that ignores case,
    Alice's and alice's would be one, and removing one would delete the other's weights."""
    if first:
        assert run_duetto("users", "add", first).returncode == 0

    result = run_duetto("users", "add", second)

    assert result.returncode == 1 and "differ only in case" in result.stderr
    assert [user["name"] for user in users_json()["users"]] == sorted({first or "default", "default"})
