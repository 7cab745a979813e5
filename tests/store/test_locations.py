from pathlib import Path

import pytest

from duetto.store import locations


def test_environment_variables_move_state_and_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUETTO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DUETTO_MODELS", str(tmp_path / "models"))

    assert locations.home_dir() == tmp_path / "home"
    assert locations.database_path() == tmp_path / "home" / "duetto.db"
    assert locations.models_dir() == tmp_path / "models"


def test_defaults_follow_the_platform_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUETTO_HOME")
    monkeypatch.delenv("DUETTO_MODELS")

    assert locations.home_dir().name == "duetto"
    assert locations.models_dir().parts[-2:] == ("duetto", "models")
    assert locations.home_dir() != locations.models_dir()
