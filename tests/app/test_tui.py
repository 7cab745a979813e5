"""Pilot tests of the chat app on the tiny models."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual import events
from textual.widgets import ListView

from duetto.app.tui.app import ChatConfig, DuettoApp
from duetto.app.tui.chat_view import MessageBlock
from duetto.app.tui.dialogs import HelpScreen
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.sidebar import Sidebar
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ModelSession
from duetto.store.conversations import ensure_user, list_conversations, list_messages
from duetto.store.database import open_database


class SlowDecoder(Decoder):
    """The tiny models write in microseconds; this one waits between deltas so a test can press Esc."""

    def generate(self, prompt_tokens, settings, should_cancel=None):
        for item in super().generate(prompt_tokens, settings, should_cancel):
            time.sleep(0.02)
            yield item


@pytest.fixture
def make_app(tiny_models: dict[str, Path], tmp_path: Path):
    def factory(decoder_class=Decoder, **settings) -> DuettoApp:
        def engine() -> Decoder:
            return decoder_class(
                ModelSession(tiny_models["target"], context_length=512, threads=1),
                ModelSession(tiny_models["draft"], context_length=512, threads=1),
            )

        return DuettoApp(
            ChatConfig(
                engine_factory=engine,
                models_label="draft → target",
                settings=DecodeSettings(max_tokens=settings.pop("max_tokens", 16), **settings),
                database_path=tmp_path / "chat.db",
            )
        )

    return factory


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


async def send(pilot, app: DuettoApp, text: str) -> None:
    await wait_for(pilot, lambda: app.decoder is not None)
    app.query_one(PromptInput).focus()
    app.query_one(PromptInput).text = text
    await pilot.press("enter")
    await wait_for(pilot, lambda: not app.generating and len(app.query(MessageBlock)) >= 2)


async def test_a_prompt_streams_a_reply_that_is_saved_with_its_stats(make_app, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "hello world")

        blocks = list(app.query(MessageBlock))
        assert [block.role for block in blocks] == ["user", "assistant"]
        assert blocks[1].text
        status = app.query_one(StatusBar)
        assert status.tokens_per_second and "tok/s" in status.render()
        assert app.query_one(PromptInput).text == ""

    db = open_database(tmp_path / "chat.db")
    [conversation] = list_conversations(db, ensure_user(db))
    assert conversation.title == "hello world"
    stored = list_messages(db, conversation.id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].stats["tokens"] == 16 and stored[1].stats["mode"] == "exact"


async def test_conversations_come_back_after_a_restart(make_app) -> None:
    async with make_app().run_test() as pilot:
        await send(pilot, pilot.app, "first chat")
        await pilot.press("ctrl+n")
        await send(pilot, pilot.app, "second chat")

    app = make_app()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.query_one(Sidebar).titles() == ["second chat", "first chat"]
        assert [block.role for block in app.query(MessageBlock)] == ["user", "assistant"]
        listing = app.query_one(ListView)
        listing.focus()
        listing.index = 1
        await pilot.press("enter")
        await pilot.pause()
        assert app.conversation.title == "first chat"
        assert list(app.query(MessageBlock))[0].text == "first chat"


async def test_escape_stops_a_reply_and_keeps_what_was_written(make_app) -> None:
    app = make_app(SlowDecoder, max_tokens=400)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.decoder is not None)
        app.query_one(PromptInput).text = "tell me a long story"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.query(MessageBlock)) == 2 and list(app.query(MessageBlock))[1].text)
        started = time.monotonic()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating)
        assert time.monotonic() - started < 2.0
        assert app.query_one(StatusBar).state == "stopped"
        partial = list(app.query(MessageBlock))[1].text
        assert partial
    db = open_database(app.config.database_path)
    [conversation] = list_conversations(db, ensure_user(db))
    stored = list_messages(db, conversation.id)
    assert stored[-1].content == partial and stored[-1].stats["finish_reason"] == "cancelled"


async def test_ctrl_j_adds_a_line_and_pasted_lines_are_not_sent(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptInput)
        prompt.focus()
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"
        prompt.post_message(events.Paste("\nline one\nline two"))
        await pilot.pause()
        assert prompt.text.endswith("line one\nline two")
        assert not app.query(MessageBlock)


async def test_help_rename_delete_and_mode(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "to be renamed")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("f2")
        await pilot.pause()
        rename_box = app.screen.query_one("#new-title")
        rename_box.value = "renamed chat"
        await pilot.press("enter")
        await pilot.pause()
        assert app.query_one(Sidebar).titles() == ["renamed chat"]
        await pilot.press("ctrl+t")
        assert app.settings.mode == "fast" and app.query_one(StatusBar).mode == "fast"
        await pilot.press("f8")
        await pilot.press("y")
        await pilot.pause()
        assert app.query_one(Sidebar).titles() == []
        assert app.conversation is None


async def test_every_action_is_in_the_command_palette(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "a chat to leave")
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for description in ("New chat", "Rename chat", "Delete chat", "Copy reply", "Stop reply", "Chats", "Mode"):
            assert description in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"New chat")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation is None)
