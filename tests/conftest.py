"""Shared fixtures: an isolated duetto home for every test, the tiny models, the real pair.

No test touches a real user's directories: DUETTO_HOME and DUETTO_MODELS point into
the test's own temporary directory, and the hub is marked offline so that nothing
tries the network by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from duetto_cli import real_models_dir  # noqa: E402
from tiny_gguf import write_fixture_set  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_duetto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "duetto-home"
    monkeypatch.setenv("DUETTO_HOME", str(home))
    monkeypatch.setenv("DUETTO_MODELS", str(tmp_path / "duetto-models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny llama models: ``draft`` and ``target`` share a vocabulary, ``other`` does not."""
    return write_fixture_set(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def real_models() -> Path:
    """The default profile's models, fetched once per machine through duetto's own fetch."""
    directory = real_models_dir()
    environment = dict(os.environ, DUETTO_MODELS=str(directory))
    environment.pop("HF_HUB_OFFLINE", None)
    subprocess.run(
        [sys.executable, "-m", "duetto.app", "models", "fetch", "default"],
        env=environment,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return directory
