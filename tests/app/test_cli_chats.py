"""``duetto chats``: conversations from the shell, made here with ``duetto ask -c`` on the tiny models."""

import json
from pathlib import Path

from duetto_cli import run_duetto


def test_list_show_export_and_remove_a_conversation(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    model = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "5", "--json")
    first = json.loads(run_duetto("ask", "the cat sat on a mat", "-c", *model).stdout)
    run_duetto("ask", "and then", "-c", *model)

    listed = json.loads(run_duetto("chats", "list", "--json").stdout)
    assert [(row["id"], row["title"], row["messages"]) for row in listed] == [
        (first["chat"], "the cat sat on a mat", 4)
    ]
    shown = run_duetto("chats", "show", str(first["chat"]))
    assert shown.returncode == 0 and shown.stdout.startswith("# the cat sat on a mat")
    assert "**You:**" in shown.stdout and first["text"].strip() in shown.stdout

    exported = tmp_path / "chat.json"
    assert run_duetto("chats", "export", str(first["chat"]), "--format", "json", "-o", str(exported)).returncode == 0
    data = json.loads(exported.read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user", "assistant"]
    assert data["messages"][1]["content"] == first["text"] and data["messages"][1]["stats"]["tokens"] >= 1
    markdown = run_duetto("chats", "export", str(first["chat"]))
    assert markdown.stdout == shown.stdout

    assert run_duetto("users", "add", "ada").returncode == 0
    others = run_duetto("chats", "show", str(first["chat"]), "--user", "ada")
    assert others.returncode == 1 and "no conversation" in others.stderr, "another user's conversation"
    unwritable = run_duetto("chats", "export", str(first["chat"]), "-o", str(tmp_path / "missing-dir" / "x.md"))
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr and "Traceback" not in unwritable.stderr
    assert run_duetto("chats", "rm", str(first["chat"])).returncode == 0
    assert json.loads(run_duetto("chats", "list", "--json").stdout) == []
