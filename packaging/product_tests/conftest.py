"""The installed product, run as a user runs it: fixtures for packaging/check_wheel.sh.

These tests never import duetto: they run the ``duetto`` that check_wheel.sh installed from the
wheel into a fresh virtual environment (DUETTO_INSTALLED_ENV), in subprocesses and in tmux.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "tests" / "fixtures"))

from duetto_cli import real_models_dir  # noqa: E402


@pytest.fixture(scope="session")
def installed_env() -> Path:
    """The virtual environment the wheel was installed into."""
    configured = os.environ.get("DUETTO_INSTALLED_ENV")
    assert configured, "run these through packaging/check_wheel.sh, which sets DUETTO_INSTALLED_ENV"
    environment = Path(configured)
    assert (environment / "bin" / "duetto").exists(), f"no duetto in {environment}/bin"
    return environment


@pytest.fixture(scope="session")
def real_models(installed_env: Path) -> Path:
    """The real default pair, in the per-machine test cache (fetched by the installed duetto if absent)."""
    directory = real_models_dir()
    subprocess.run(
        [str(installed_env / "bin" / "duetto"), "models", "fetch", "default"],
        env={**os.environ, "DUETTO_MODELS": str(directory)},
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return directory


@pytest.fixture
def user_environment(tmp_path: Path, real_models: Path) -> dict[str, str]:
    """A new user's environment: an empty duetto home, the real models, a real terminal type."""
    return {
        "DUETTO_HOME": str(tmp_path / "home"),
        "DUETTO_MODELS": str(real_models),
        "HF_HUB_OFFLINE": "1",
        "TERM": "xterm-256color",
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }
