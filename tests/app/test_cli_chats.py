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
    cut = [m for m in data["messages"] if m["role"] == "assistant" and m["stats"]["finish_reason"] == "length"]
    assert cut and markdown.stdout.count("*(cut at the token limit)*") == len(cut), "a cut reply says so"

    assert run_duetto("users", "add", "ada").returncode == 0
    others = run_duetto("chats", "show", str(first["chat"]), "--user", "ada")
    assert others.returncode == 1 and "no conversation" in others.stderr, "another user's conversation"
    unwritable = run_duetto("chats", "export", str(first["chat"]), "-o", str(tmp_path / "missing-dir" / "x.md"))
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr and "Traceback" not in unwritable.stderr
    assert run_duetto("chats", "rm", str(first["chat"])).returncode == 0
    assert json.loads(run_duetto("chats", "list", "--json").stdout) == []


def test_search_finds_messages_and_an_exported_conversation_imports_whole(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    model = ("--threads", "1", "--target", str(tiny_models["target"]), "--max-tokens", "5", "--json")
    chat = json.loads(run_duetto("ask", "how do I sort a dict by value", "-c", *model).stdout)["chat"]
    run_duetto("ask", "and with lambda kv: kv[1]?", "--chat", str(chat), *model)

    hits = json.loads(run_duetto("chats", "search", "lambda", "kv", "--json").stdout)
    assert [(hit["chat"], hit["role"], hit["position"]) for hit in hits] == [(chat, "user", 3)]
    listed = run_duetto("chats", "search", "lambda", "kv")
    assert listed.returncode == 0 and "(user, message 3 of 4)" in listed.stdout, "which of the chat's messages"
    assert "«lambda»" in hits[0]["snippet"]
    assert json.loads(run_duetto("chats", "search", "sor", "--json").stdout)[0]["chat"] == chat, "a prefix"
    quoted = run_duetto("chats", "search", 'kv[1]"', "OR", "-")  # FTS5 syntax in what a user types is text
    assert quoted.returncode == 1 and "no message holds" in quoted.stderr and "Traceback" not in quoted.stderr
    assert run_duetto("chats", "search", "lambda", "--user", "nobody").returncode == 1

    exported = tmp_path / "chat.json"
    run_duetto("chats", "export", str(chat), "--format", "json", "-o", str(exported))
    imported = json.loads(run_duetto("chats", "import", str(exported), "--json").stdout)
    assert imported["id"] != chat and imported["messages"] == 4
    original, restored = (
        json.loads(run_duetto("chats", "show", str(i), "--json").stdout) for i in (chat, imported["id"])
    )
    assert restored["messages"] == original["messages"], "roles, text, stats and times, whole"
    assert restored["title"] == original["title"]

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"title": "x", "messages": [{"role": "user", "content": "ok"}, {"role": "robot"}]}))
    refused = run_duetto("chats", "import", str(broken))
    assert refused.returncode == 1 and "message 2 needs a role" in refused.stderr
    for settings, said in (({"chat": {"temperature": 99}}, "temperature must be between 0 and 5"),
                           ({"temperature": 0.5}, '"settings" holds temperature; a chat keeps only')):  # fmt: skip
        broken.write_text(
            json.dumps({"title": "x", "messages": [{"role": "user", "content": "ok"}], "settings": settings})
        )
        refused = run_duetto("chats", "import", str(broken))
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    assert len(json.loads(run_duetto("chats", "list", "--json").stdout)) == 2, "nothing of the broken files was kept"
    not_json = run_duetto("chats", "import", str(tiny_models["target"]))
    assert not_json.returncode == 1 and "not JSON" in not_json.stderr and "Traceback" not in not_json.stderr


def test_usage_errors_are_one_line() -> None:
    result = run_duetto("chats", "show", "not-a-number")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("duetto chats show: error: ") and "(see: duetto chats show --help)" in result.stderr
