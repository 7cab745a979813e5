"""Pilot tests of the chat app on the tiny models."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from chat_app import shows_what_is_stored, tiny_chat_app, wait_for
from textual import events
from textual.widgets import Input, ListView, Select

from duetto.app.core.models import Engine
from duetto.app.core.settings import ChatSettings, load_chat_settings, save_chat_settings
from duetto.app.tui.app import DuettoApp
from duetto.app.tui.chat_view import ChatView, MessageBlock
from duetto.app.tui.dialogs import HelpScreen
from duetto.app.tui.draft_sources import SOURCE_STYLES, DraftLegend
from duetto.app.tui.keys import APP_KEYS, help_rows, key_label
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.settings_screen import SettingsScreen
from duetto.app.tui.sidebar import Sidebar
from duetto.app.tui.status_bar import StatusBar
from duetto.app.tui.user_screen import UserScreen
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ModelSession
from duetto.store.conversations import ensure_user, list_conversations, list_messages, list_users
from duetto.store.database import open_database
from duetto.store.errors import StoreError


class SlowDecoder(Decoder):
    """The tiny models write in microseconds; this one waits between deltas so a test can press Esc."""

    def generate(
        self, prompt_tokens, settings, should_cancel=None, on_prompt_progress=None, on_step=None, prediction=(),
        earlier=(), keep_reading=None,
    ):  # fmt: skip
        for item in super().generate(
            prompt_tokens, settings, should_cancel, on_prompt_progress, on_step, prediction, earlier, keep_reading
        ):
            time.sleep(0.02)
            yield item


@pytest.fixture
def make_app(tiny_models: dict[str, Path], tmp_path: Path):
    def factory(decoder_class=Decoder, **settings) -> DuettoApp:
        settings = DecodeSettings(max_tokens=settings.pop("max_tokens", 16), **settings)
        return tiny_chat_app(tiny_models, tmp_path / "chat.db", settings, decoder_class=decoder_class)

    return factory


async def send(pilot, app: DuettoApp, text: str) -> None:
    await wait_for(pilot, lambda: app.engine is not None)
    shown = len(app.query_one(ChatView).messages())
    app.query_one(PromptInput).focus()
    app.query_one(PromptInput).text = text
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(app.query_one(ChatView).messages()) >= shown + 2 and shows_what_is_stored(app))


async def test_a_prompt_streams_a_reply_that_is_saved_with_its_stats(make_app, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "hello world")

        blocks = list(app.query_one(ChatView).messages())
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
        await wait_for(pilot, lambda: app.query_one(Sidebar).titles() == ["second chat", "first chat"])
        await wait_for(
            pilot, lambda: [block.role for block in app.query_one(ChatView).messages()] == ["user", "assistant"]
        )
        listing = app.query_one(ListView)
        listing.focus()
        listing.index = 1
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation.title == "first chat" and shows_what_is_stored(app))
        assert list(app.query_one(ChatView).messages())[0].text == "first chat"


async def test_escape_stops_a_reply_and_keeps_what_was_written(make_app) -> None:
    app = make_app(SlowDecoder, max_tokens=400)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.query_one(PromptInput).text = "tell me a long story"
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: len(app.query_one(ChatView).messages()) == 2 and list(app.query_one(ChatView).messages())[1].text,
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating)
        assert app.query_one(StatusBar).state == "stopped"
        partial = list(app.query_one(ChatView).messages())[1].text
        assert partial
        notes = lambda: [str(note.render()) for note in app.query_one(ChatView).query(".note")]  # noqa: E731
        assert notes() == ["(stopped before its end: Ctrl+G goes on from where it stopped)"]
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not app.query_one(ChatView).messages())
        await app.open_conversation(app.conversation or list_conversations(app.db, app.user)[0])
        assert notes() == ["(stopped before its end: Ctrl+G goes on from where it stopped)"], "said again on reopening"
    db = open_database(app.config.database_path)
    [conversation] = list_conversations(db, ensure_user(db))
    stored = list_messages(db, conversation.id)
    assert stored[-1].content == partial and stored[-1].stats["finish_reason"] == "cancelled"
    assert stored[-1].stats["tokens"] < 400, "stopped long before the reply's end"


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
        assert not app.query_one(ChatView).messages()


async def test_help_rename_delete_and_mode(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "to be renamed")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("f2")
        await wait_for(pilot, lambda: bool(app.screen.query("#new-title")))
        rename_box = app.screen.query_one("#new-title")
        rename_box.value = "renamed chat"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one(Sidebar).titles() == ["renamed chat"])
        await pilot.press("ctrl+t")
        assert app.settings.mode == "fast" and app.query_one(StatusBar).mode == "fast"
        await pilot.press("f8")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.query_one(Sidebar).titles() == [] and app.conversation is None)


def palette_highlights(app: DuettoApp, title: str) -> bool:
    """Whether the command palette is open with ``title`` highlighted: its search has run."""
    from textual.command import CommandList, CommandPalette

    if not isinstance(app.screen, CommandPalette):
        return False
    options = app.screen.query_one(CommandList)
    if options.highlighted is None:
        return False
    return title in str(options.get_option_at_index(options.highlighted).prompt)


async def test_every_action_is_in_the_command_palette(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "a chat to leave")
        commands = list(app.get_system_commands(app.screen))
        titles = [command.title for command in commands]
        for action in APP_KEYS:
            assert action.id == "quit" or action.title in titles, action.id
        assert len(titles) == len(set(titles)), "no entry twice"
        [rename] = [command for command in commands if command.title == "Rename this chat"]
        assert rename.help == "F2 / Alt+R: rename this chat", "the keys and what it does, not the title again"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"New chat")
        await wait_for(pilot, lambda: palette_highlights(app, "New chat"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.conversation is None)


async def test_settings_are_checked_saved_applied_to_the_next_reply_and_restored(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        await pilot.press("f3")
        assert isinstance(app.screen, SettingsScreen)
        app.screen.query_one("#temperature", Input).value = "hot"
        app.screen.query_one("#max_tokens", Input).focus()
        await pilot.press("enter")
        error = lambda: str(app.screen.query_one("#settings-error").render())  # noqa: E731
        await wait_for(pilot, lambda: "temperature must be a number, not 'hot'" in error())
        assert isinstance(app.screen, SettingsScreen), "a bad value keeps the dialog open"
        app.screen.query_one("#temperature", Input).value = "0"
        app.screen.query_one("#max_tokens", Input).value = "5"
        app.screen.query_one("#mode", Select).value = "target"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        assert app.settings.max_tokens == 5 and app.settings.mode == "target"
        assert app.query_one(StatusBar).mode == "target"
        await send(pilot, app, "short please")

    db = open_database(app.config.database_path)
    [conversation] = list_conversations(db, ensure_user(db))
    reply_stats = list_messages(db, conversation.id)[-1].stats
    assert reply_stats["tokens"] == 5 and reply_stats["mode"] == "target"

    restarted = make_app()
    async with restarted.run_test() as pilot:
        await pilot.pause()
        assert restarted.settings.max_tokens == 5 and restarted.settings.mode == "target"
        assert restarted.query_one(StatusBar).mode == "target"
        await pilot.press("f3")
        assert restarted.screen.query_one("#max_tokens", Input).value == "5"


async def test_a_setting_given_on_the_command_line_wins_over_the_saved_one(make_app, tmp_path: Path) -> None:
    db = open_database(tmp_path / "chat.db")
    save_chat_settings(db, ensure_user(db), ChatSettings(max_tokens=5, temperature=0.5))
    app = make_app()
    app.config = replace(
        app.config, settings=DecodeSettings(max_tokens=9), command_line_settings=frozenset({"max_tokens"})
    )
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.settings.max_tokens == 9 and app.settings.temperature == 0.5


async def test_switching_user_opens_that_users_chats_settings_and_engine(make_app) -> None:
    built_for: list[str] = []
    app = make_app()
    factory = app.config.engine_factory

    def engine(user_name: str) -> Engine:
        built_for.append(user_name)
        return factory(user_name)

    app.config = replace(app.config, engine_factory=engine, engine_per_user=True)
    async with app.run_test() as pilot:
        await send(pilot, app, "the default user's chat")
        await pilot.press("f4")
        assert isinstance(app.screen, UserScreen)
        app.screen.query_one("#new-user", Input).focus()
        await pilot.press(*"bad name!", "enter")
        error = lambda: str(app.screen.query_one("#user-error").render())  # noqa: E731
        await wait_for(pilot, lambda: "invalid user name" in error())
        assert isinstance(app.screen, UserScreen)
        app.screen.query_one("#new-user", Input).value = "default"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "already exists" in error())
        app.screen.query_one("#new-user", Input).value = "alice"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.user.name == "alice" and app.query_one(StatusBar).user_name == "alice")
        await wait_for(pilot, lambda: app.query_one(Sidebar).titles() == [] and not app.query_one(ChatView).messages())
        await pilot.press("ctrl+t")  # alice's mode: fast, saved for her only
        await send(pilot, app, "alice's chat")
        assert built_for == ["default", "alice"]

        await pilot.press("f4")
        await pilot.press("down", "enter")  # the list: alice (current), default
        await wait_for(pilot, lambda: app.user.name == "default")
        await wait_for(pilot, lambda: app.query_one(Sidebar).titles() == ["the default user's chat"])
        assert app.settings.mode == "exact"
        await wait_for(pilot, lambda: built_for == ["default", "alice", "default"] and app.engine is not None)

    db = open_database(app.config.database_path)
    assert [user.name for user in list_users(db)] == ["alice", "default"]
    assert load_chat_settings(db, ensure_user(db, "alice")).mode == "fast"


async def test_draft_colours_show_who_wrote_each_piece_of_a_reply(make_app) -> None:
    # The draft alone writes (no fallback, no rollback): every piece is the draft model's.
    app = make_app(mode="fast", fallback_threshold=0.0, rollback_threshold=math.inf, max_draft_run=0)
    async with app.run_test() as pilot:
        await send(pilot, app, "written by the draft")
        await pilot.press("f5")
        assert app.query_one(DraftLegend).display and "draft model" in app.query_one(DraftLegend).content.plain
        reply = list(app.query_one(ChatView).messages())[-1]
        assert not reply.display and reply.source_view.display
        assert {source for source, _ in reply.spans} == {"model"}
        assert reply.source_view.content.plain == reply.text
        assert all(span.style == SOURCE_STYLES["model"] for span in reply.source_view.content.spans)

        await pilot.press("ctrl+t")  # fast → target: only the target writes
        assert app.settings.mode == "target"
        await send(pilot, app, "written by the target")
        reply = list(app.query_one(ChatView).messages())[-1]
        assert reply.source_view.display and {source for source, _ in reply.spans} == {"target"}
        assert not reply.source_view.content.spans, "the target's text is not coloured"

        await pilot.press("ctrl+n")
        # the new chat's view is cleared first (under load, a pause was not always enough)
        await wait_for(pilot, lambda: app.conversation is None and not list(app.query_one(ChatView).messages()))
        # From the database: the list may be being remade by the app's look at other writes.
        await app.open_conversation(list_conversations(app.db, app.user)[0])
        await wait_for(pilot, lambda: shows_what_is_stored(app))  # the app's look at other writes may rebuild it too
        replies = [block for block in app.query_one(ChatView).messages() if block.role == "assistant"]
        assert [block.source_view.display for block in replies] == [True, True], "kept for this session"

        await pilot.press("f5")
        assert all(block.display for block in app.query_one(ChatView).messages())
        assert not app.query_one(DraftLegend).display


class GatedDecoder(Decoder):
    """Writes one delta, then waits for the test to open the gate: the reply cannot end before it."""

    gate = threading.Event()

    def generate(
        self, prompt_tokens, settings, should_cancel=None, on_prompt_progress=None, on_step=None, prediction=(),
        earlier=(), keep_reading=None,
    ):  # fmt: skip
        for index, item in enumerate(
            super().generate(
                prompt_tokens, settings, should_cancel, on_prompt_progress, on_step, prediction, earlier, keep_reading
            )
        ):
            if index == 1:
                assert self.gate.wait(30), "the test never opened the gate"
            yield item


class SilentDecoder(Decoder):
    """Writes nothing until cancelled: a reply stopped before its first word."""

    def generate(
        self, prompt_tokens, settings, should_cancel=None, on_prompt_progress=None, on_step=None, prediction=(),
        earlier=(), keep_reading=None,
    ):  # fmt: skip
        deadline = time.monotonic() + 30
        while not (should_cancel and should_cancel()):
            assert time.monotonic() < deadline, "the test never pressed Esc"
            time.sleep(0.01)
        yield from super().generate(
            prompt_tokens, replace(settings, max_tokens=0), should_cancel, on_prompt_progress, on_step, prediction,
            earlier, keep_reading,
        )  # fmt: skip


async def test_a_reply_stopped_before_its_first_word_has_no_note(make_app) -> None:
    """Nothing was kept, so there is nothing to say was stopped, nor to go on with."""
    app = make_app(SilentDecoder)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.query_one(PromptInput).text = "say nothing"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.generating)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.generating)
        await wait_for(pilot, lambda: shows_what_is_stored(app))
        assert not app.query_one(ChatView).query(".note")


async def test_keys_are_handled_while_a_reply_is_being_generated(make_app) -> None:
    GatedDecoder.gate.clear()
    app = make_app(GatedDecoder, max_tokens=40)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.query_one(PromptInput).text = "a slow reply"
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: len(app.query_one(ChatView).messages()) == 2 and list(app.query_one(ChatView).messages())[1].text,
        )

        await pilot.press("n", "e", "x", "t")  # typing the next prompt while the worker waits
        assert app.query_one(PromptInput).text == "next"
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.generating, "all of this happened before the reply could end"

        GatedDecoder.gate.set()
        await wait_for(pilot, lambda: not app.generating)
        assert app.query_one(PromptInput).text == "next"


def test_every_f_key_action_has_a_chord_and_every_binding_is_in_the_help() -> None:
    rows = dict(help_rows({}))
    for binding in DuettoApp.BINDINGS:
        keys = binding.key.split(",")
        if any(key.startswith("f") and key[1:].isdigit() for key in keys):
            assert any(key.startswith(("ctrl+", "alt+")) for key in keys), f"{binding.key}: F-keys get swallowed"
        assert key_label(binding.key) in rows, binding.key
    assert rows["F2 / Alt+R"] == "rename this chat"
    assert key_label("escape") == "Esc" and key_label("ctrl+shift+k") == "Ctrl+Shift+K"


def test_duetto_chat_passes_the_options_given_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from duetto.app.cli.chat import chat

    configs = []
    monkeypatch.setattr(DuettoApp, "run", lambda app: configs.append(app.config))
    result = CliRunner().invoke(chat, ["--max-tokens", "7", "--draft", "lookup", "--user", "alice"])
    assert result.exit_code == 0, result.output
    [config] = configs
    assert config.command_line_settings == {"max_tokens", "drafter"}
    assert config.settings.max_tokens == 7 and config.settings.drafter == "lookup"
    assert config.user_name == "alice" and config.missing_models, "the isolated models directory is empty"


async def test_an_engine_that_cannot_be_built_for_a_user_is_a_notification(make_app) -> None:
    def engine(user_name: str) -> Engine:
        raise StoreError(f"the plugin of {user_name} is damaged")

    app = make_app()
    app.config = replace(app.config, engine_factory=engine)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.query_one(StatusBar).models == "no models")
        assert any("plugin of default is damaged" in notice for notice in app.notices)


async def test_without_a_draft_model_fast_mode_and_the_model_drafter_give_way(make_app, tiny_models) -> None:
    def target_only(user_name: str) -> Engine:
        return Engine(Decoder(ModelSession(tiny_models["target"], context_length=512, threads=1)))

    app = make_app(mode="fast", drafter="model")
    app.config = replace(app.config, engine_factory=target_only)
    async with app.run_test() as pilot:
        await send(pilot, app, "no draft model here")
        assert any("fast mode needs a draft model" in notice for notice in app.notices)
    db = open_database(app.config.database_path)
    [conversation] = list_conversations(db, ensure_user(db))
    reply_stats = list_messages(db, conversation.id)[-1].stats
    assert reply_stats["mode"] == "exact" and reply_stats["drafter"] == "lookup"


async def test_code_in_a_streamed_reply_is_highlighted_once_the_reply_ends() -> None:
    from textual.app import App
    from textual.content import Content
    from textual.widgets import Label

    from duetto.app.tui.chat_view import ChatView, StreamingFence

    class ChatOnly(App[None]):
        def compose(self):
            yield ChatView()

    app = ChatOnly()
    async with app.run_test() as pilot:
        chat = app.query_one(ChatView)
        await chat.begin_reply()
        for piece in ["Code:\n\n```python\n", "def f(x):\n", "    return x + 1\n", "```\n"]:
            await chat.append_reply(piece)
            await pilot.pause(0.05)
        await wait_for(pilot, lambda: ["return x + 1" in fence.code for fence in chat.query(StreamingFence)] == [True])
        (fence,) = chat.query(StreamingFence)
        shown = fence.query_one("#code-content", Label)
        assert fence.plain and not Content.from_text(shown.content).spans

        await chat.end_reply()
        await pilot.pause()

        shown = fence.query_one("#code-content", Label)
        assert not fence.plain and Content.from_text(shown.content).spans, "highlighting adds styled spans"


async def test_a_code_line_wider_than_the_window_shows_a_scrollbar_under_its_block() -> None:
    from textual.app import App

    from duetto.app.tui.chat_view import ChatView, StreamingFence

    class ChatOnly(App[None]):
        def compose(self):
            yield ChatView()

    app = ChatOnly()
    async with app.run_test(size=(80, 30)) as pilot:
        chat = app.query_one(ChatView)
        wide = "def is_palindrome(s): return s.lower().replace(' ', '') == s.lower().replace(' ', '')[::-1]"
        await chat.add_message("assistant", f"```python\n{wide}\n```\n\n```python\nx = 1\n```")
        await wait_for(pilot, lambda: len(chat.query(StreamingFence)) == 2)
        await pilot.pause()
        cut, whole = chat.query(StreamingFence)
        assert cut.max_scroll_x > 0 and cut.scrollbar_size_horizontal == 1, "the cut line says so"
        assert whole.scrollbar_size_horizontal == 0


async def test_a_pasted_module_is_shown_as_written_and_a_cut_reply_says_so(make_app) -> None:
    code = 'def path(name):\n    return "C:\\\\temp\\\\" + name  # *not* markdown\n\n\nx = [1,\n     2]'
    app = make_app(max_tokens=4)
    async with app.run_test() as pilot:
        await send(pilot, app, code)

        user_message, reply = app.query_one(ChatView).messages()
        assert str(user_message.render()) == code, "lines, indentation, backslashes and asterisks kept"
        assert app.query_one(ChatView).query(".note"), "a note under the reply cut at the limit"
        assert str(app.query_one(ChatView).query(".note").last().render()) == (
            "(cut at the token limit: raise Max tokens in the settings, F3, or Ctrl+G goes on from where it stopped)"
        )


async def test_ctrl_y_copies_the_last_reply_while_the_prompt_box_has_focus(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "hello world")
        copied: list[str] = []
        app.copy_to_clipboard = copied.append  # the terminal's clipboard is not reachable in a test
        app.query_one(PromptInput).focus()

        await pilot.press("ctrl+y")

        assert copied == [app.query_one(ChatView).last_reply_text()]


@pytest.mark.parametrize("columns", [80, 200])
async def test_the_status_bar_keeps_speed_acceptance_and_user_in_view_at_80_columns(make_app, columns: int) -> None:
    """At 80 columns the whole line is cut (the user's name went first): it goes compact (the
    target's name, no labels' words) so that its end is in view; a wide one is whole."""
    app = make_app()
    async with app.run_test(size=(columns, 24)) as pilot:
        await send(pilot, app, "hello world")
        status = app.query_one(StatusBar)
        status.models = "qwen2.5-coder-0.5b → qwen2.5-coder-1.5b"  # the default pair, as the bar names it
        await pilot.pause()
        line = str(status.render())
        assert line.endswith("user default") and "tok/s" in line
        if columns == 80:
            assert line.startswith("qwen2.5-coder-1.5b │ exact │") and "acc " in line
            assert len(line) <= status.content_size.width
            status.compression = "doc 12345 → read 1890 tokens"  # after a document answer
            status.models = "loading qwen2.5-coder-0.5b → qwen2.5-coder-1.5b…"  # a pair being loaded
            await pilot.pause()
            line = str(status.render())
            assert line.startswith("loading qwen2.5-coder-1.5b…") and "user default │ doc 12345" in line
        else:
            assert line.startswith(status.models + " │ mode exact │") and "accepted " in line


async def test_the_status_bar_keeps_one_form_while_a_reply_is_written(make_app) -> None:
    """At 100 columns the idle line fits and the writing one did not: the bar went compact at
    every reply and back after it. The form is chosen on the line at its widest."""
    app = make_app()
    async with app.run_test(size=(100, 24)) as pilot:
        await send(pilot, app, "hello world")
        status = app.query_one(StatusBar)
        status.models = "qwen2.5-coder-0.5b → qwen2.5-coder-1.5b"
        forms = []
        for state, speed in (("", 9.9), ("writing…", 10.0), ("", 10.0)):
            status.state, status.tokens_per_second = state, speed
            await pilot.pause()
            forms.append(" → " in str(status.render()))
        assert len(set(forms)) == 1, forms


async def test_two_chat_list_refreshes_at_once_list_each_chat_once(make_app) -> None:
    """A rename's refresh and the look at other processes' writes can overlap (a CI run listed a
    renamed chat twice)."""
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "listed once")
        sidebar = app.query_one(Sidebar)
        await asyncio.gather(app.refresh_sidebar(), app.refresh_sidebar(), app.refresh_sidebar())
        async with sidebar.showing:  # not while the app's own look at other writes lists them
            assert sidebar.titles() == ["listed once"]


async def test_a_chat_rebuilt_while_another_rebuild_waits_shows_each_reply_whole_and_once(make_app) -> None:
    """With F5's colours on, a reply's block appears with its coloured view, never before it, and
    a look at other processes' writes that waited for a rebuild leaves the rebuilt view alone (a CI
    run read a reopened chat mid-rebuild: a reply without its coloured view)."""
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "first")
        await send(pilot, app, "second")
        await pilot.press("f5")
        chat = app.query_one(ChatView)
        without_view: list[int | None] = []

        async def watch() -> None:
            while True:
                without_view.extend(block.message_id for block in chat.query(MessageBlock) if block.source_view is None)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        rebuild = asyncio.create_task(app.show_conversation())
        look = asyncio.create_task(app.show_conversation(unless_shown=True))
        await rebuild
        shown = list(chat.children)
        await look
        watcher.cancel()
        assert without_view == []
        assert list(chat.children) == shown, "the waiting look rebuilt a view that was up to date"
        assert shows_what_is_stored(app)


@pytest.mark.parametrize("box", ["search", "prompt"])
async def test_keys_typed_faster_than_the_app_runs_apply_in_order(make_app, box: str) -> None:
    """Textual runs a text box's Backspace and arrows only after the key has bubbled up to the
    app, so characters typed right after them landed first ("lemon", 5 Backspaces, "normalized"
    gave "lemonnorma" in a new user's search box)."""
    app = make_app()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        if box == "search":
            await pilot.press("ctrl+f")
            value = lambda: app.query_one(Sidebar).search_text()  # noqa: E731
        else:
            app.query_one(PromptInput).focus()
            value = lambda: app.query_one(PromptInput).text  # noqa: E731
        await pilot.pause()
        keys = [*"lemon", *["backspace"] * 5, *"norm", "left", "left", *"XY"]
        for key in keys:  # all queued at once, as a fast typist's or a busy machine's keys are
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await wait_for(pilot, lambda: len(value()) >= 6)
        await pilot.pause(0.2)
        assert value() == "noXYrm"


async def test_a_search_with_no_chat_says_so_and_a_new_chat_clears_it(make_app) -> None:
    """A new user deleted a chat under a forgotten search and saw an empty list; the chat they
    started next was hidden by the same search."""
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "a first chat")
        await pilot.press("ctrl+f", *"zebra")
        no_match = app.query_one("#no-match")
        await wait_for(pilot, lambda: no_match.display and "No chat holds “zebra”" in str(no_match.render()))
        async with app.query_one(Sidebar).showing:
            assert app.query_one(Sidebar).titles() == []
        await pilot.press("ctrl+n")
        await send(pilot, app, "a second chat")
        await wait_for(pilot, lambda: app.query_one(Sidebar).titles() == ["a second chat", "a first chat"])
        assert app.query_one(Sidebar).search_text() == "" and not no_match.display
