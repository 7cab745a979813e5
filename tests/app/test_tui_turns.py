"""Pilot tests of what the chat app does with turns and messages: write a reply again, edit and
resend, continue a cut reply, copy a message or a code block, search, export, system prompts,
prompt history and rebound keys (on the tiny models)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from chat_app import shows_what_is_stored, tiny_chat_app, wait_for
from textual import events

from duetto.app.core.chat_export import import_json
from duetto.app.core.models import ModelPair
from duetto.app.tui.app import DuettoApp
from duetto.app.tui.chat_view import ChatView, MessageBlock, StreamingFence, UserMessage
from duetto.app.tui.dialogs import HelpScreen
from duetto.app.tui.pair_screen import PairScreen
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.sidebar import ConversationItem, Sidebar
from duetto.app.tui.status_bar import StatusBar
from duetto.app.tui.system_prompt_screen import SystemPromptScreen
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversations import (
    add_message,
    create_conversation,
    delete_conversation,
    ensure_user,
    get_conversation,
    list_conversations,
    list_messages,
)
from duetto.store.database import open_database
from duetto.store.personas import list_personas

REPLY_WITH_CODE = (
    "Two ways:\n\n```python\nfirst = sorted(d.items())\n```\n\nor\n\n```python\nsecond = dict(sorted(d.items()))\n```\n"
)


@pytest.fixture
def make_app(tiny_models: dict[str, Path], tmp_path: Path):
    def factory(**settings) -> DuettoApp:
        settings = DecodeSettings(max_tokens=settings.pop("max_tokens", 8), **settings)
        return tiny_chat_app(tiny_models, tmp_path / "chat.db", settings)

    return factory


def a_chat_with_code(db) -> None:
    conversation = create_conversation(db, ensure_user(db), "sorting")
    add_message(db, conversation.id, "user", "how do I sort a dict?")
    add_message(db, conversation.id, "assistant", REPLY_WITH_CODE)


@pytest.fixture
def db(tmp_path: Path):
    return open_database(tmp_path / "chat.db")


def chats_of_one_message(db, *titles: str):
    """The default user, with a chat for each title (the last one the newest), each holding its
    title as a message of the user's."""
    user = ensure_user(db)
    for title in titles:
        add_message(db, create_conversation(db, user, title).id, "user", title)
    return user


async def ready(pilot, app: DuettoApp) -> None:
    await wait_for(pilot, lambda: app.engine is not None)


async def send(pilot, app: DuettoApp, text: str) -> None:
    await ready(pilot, app)
    shown = len(app.query_one(ChatView).messages())
    app.query_one(PromptInput).focus()
    app.query_one(PromptInput).text = text
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(app.query_one(ChatView).messages()) >= shown + 2 and shows_what_is_stored(app))


def shown(app: DuettoApp) -> list[tuple[str, str]]:
    return [(message.role, message.text) for message in app.query_one(ChatView).messages()]


def stored(db, app: DuettoApp) -> list[tuple[str, str]]:
    return [(message.role, message.content) for message in list_messages(db, app.conversation.id)]


async def test_ctrl_r_writes_the_last_reply_again_in_its_place(make_app, db) -> None:
    app = make_app(temperature=1.0)
    async with app.run_test() as pilot:
        await send(pilot, app, "the cat sat")
        first_reply = shown(app)[1][1]

        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not app.generating and shown(app)[1][1] != first_reply)

        assert [role for role, _ in shown(app)] == ["user", "assistant"]
        assert stored(db, app) == shown(app), "the screen and the database agree"


async def test_an_edited_message_is_resent_and_the_turns_after_it_are_replaced(make_app, db) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "first question")
        await send(pilot, app, "second question")
        await send(pilot, app, "third question")

        second = app.query_one(ChatView).messages()[2]
        assert isinstance(second, UserMessage) and second.message_id is not None
        second.focus()
        await pilot.press("e")
        prompt = app.query_one(PromptInput)
        await wait_for(pilot, lambda: app.editing is not None and prompt.has_focus)
        assert prompt.text == "second question"
        assert "editing" in app.query_one(StatusBar).state
        prompt.text = "second, edited"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(shown(app)) == 4 and shows_what_is_stored(app))

        assert [text for role, text in shown(app) if role == "user"] == ["first question", "second, edited"]
        assert stored(db, app) == shown(app)

        await pilot.press("alt+e")  # the last message of mine, from the prompt box
        await wait_for(pilot, lambda: app.editing is not None)
        assert prompt.text == "second, edited"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.editing is None)
        assert prompt.text == "" and len(stored(db, app)) == 4, "Esc: nothing changed"


async def test_ctrl_g_continues_a_reply_cut_at_the_token_limit(make_app, db) -> None:
    app = make_app(max_tokens=3)
    async with app.run_test() as pilot:
        await send(pilot, app, "the cat sat")
        cut = shown(app)[1][1]
        assert app.query_one(ChatView).query(".note"), "the cut reply says so"

        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: not app.generating and len(shown(app)[1][1]) > len(cut))

        assert shown(app)[1][1].startswith(cut)
        assert stored(db, app) == shown(app)
        assert list_messages(db, app.conversation.id)[1].stats["continued"] is True


async def test_a_message_or_one_of_its_code_blocks_is_copied_by_key_and_by_click(make_app, db) -> None:
    a_chat_with_code(db)
    app = make_app()
    copied: list[str] = []
    async with app.run_test() as pilot:
        await ready(pilot, app)
        app.copy_to_clipboard = copied.append  # what Textual writes to the terminal as OSC 52
        reply = app.query_one(ChatView).messages()[1]
        assert isinstance(reply, MessageBlock)

        await pilot.press("alt+y")
        await wait_for(pilot, lambda: len(copied) == 1)
        assert copied[-1] == "second = dict(sorted(d.items()))"
        reply.focus()
        await pilot.press("1")
        await wait_for(pilot, lambda: len(copied) == 2)
        assert copied[-1] == "first = sorted(d.items())"
        await pilot.press("c")
        await wait_for(pilot, lambda: len(copied) == 3)
        assert copied[-1] == REPLY_WITH_CODE
        await pilot.press("3")
        await wait_for(pilot, lambda: any("2 code blocks" in notice for notice in app.notices))
        assert len(copied) == 3
        await pilot.click(reply.query(StreamingFence).last())
        await wait_for(pilot, lambda: len(copied) == 4)
        assert copied[-1].rstrip("\n") == "second = dict(sorted(d.items()))"
        assert any("Copied code block" in notice for notice in app.notices)


async def test_search_finds_a_chat_by_the_words_of_its_messages(make_app, db) -> None:
    user = ensure_user(db)
    for title, text in (("Regex", "match dates like 2024-01-31"), ("Sorting", "sort a dict by its values")):
        conversation = create_conversation(db, user, title)
        add_message(db, conversation.id, "user", text)
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        sidebar = app.query_one(Sidebar)
        sidebar.display = False

        await pilot.press("ctrl+f")
        assert sidebar.display
        await pilot.press(*"values")
        await wait_for(pilot, lambda: sidebar.titles() == ["Sorting"])
        await pilot.press(*[*["backspace"] * 6, *"dat"])  # a prefix matches while typing
        await wait_for(pilot, lambda: sidebar.titles() == ["Regex"])
        prompt = app.query_one(PromptInput)
        await pilot.press("enter")  # opens the first chat listed
        await wait_for(pilot, lambda: app.conversation is not None and app.conversation.title == "Regex")
        await wait_for(pilot, lambda: prompt.has_focus)  # what opening a chat ends with

        await pilot.press("ctrl+f", *["backspace"] * 3)  # every chat again, then down into the list
        await wait_for(pilot, lambda: sidebar.titles() == ["Sorting", "Regex"])
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: app.conversation.title == "Regex" and prompt.has_focus)
        await pilot.press("ctrl+f", "down", "enter")
        await wait_for(pilot, lambda: app.conversation.title == "Sorting")


async def test_enter_in_the_search_box_opens_the_latest_match_for_what_it_holds_now(
    make_app, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enter right after typing, before the list follows the search box (it waits for typing to
    pause), opened the first chat of the list as it was: every chat, the newest first. An empty
    box's Enter goes back to the prompt, in the chat that is open."""
    monkeypatch.setattr("duetto.app.tui.app.SEARCH_PAUSE_SECONDS", 60.0)  # the list never follows in time
    user = ensure_user(db)
    for title, text in (("Regex", "match dates like 2024-01-31"), ("Sorting", "sort a dict by its values")):
        add_message(db, create_conversation(db, user, title).id, "user", text)
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        sidebar, prompt = app.query_one(Sidebar), app.query_one(PromptInput)
        await wait_for(pilot, lambda: sidebar.titles() == ["Sorting", "Regex"])
        assert app.conversation.title == "Sorting"
        await pilot.press("ctrl+f", "enter")
        await wait_for(pilot, lambda: prompt.has_focus)
        assert app.conversation.title == "Sorting", "nothing searched, nothing opened"
        await pilot.press("ctrl+f", *"dates", "enter")
        await wait_for(pilot, lambda: app.conversation.title == "Regex" and prompt.has_focus)
        await wait_for(pilot, lambda: sidebar.titles() == ["Regex"])  # the list may be being remade


async def test_a_delete_confirmed_after_the_chat_went_elsewhere_deletes_no_other_chat(make_app, db) -> None:
    """The confirmation names a chat; if another duetto removes that chat while it is asked, the
    app opens another one, and the answer must not delete that one."""
    user = chats_of_one_message(db, "kept", "to delete")
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        assert app.conversation.title == "to delete"
        await pilot.press("f8")
        await wait_for(pilot, lambda: app.screen.is_modal)
        delete_conversation(db, app.conversation.id)  # db: another connection, as another duetto's
        await wait_for(pilot, lambda: app.conversation.title == "kept")  # the look at other writes opened it
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.screen.is_modal and any("no conversation" in n for n in app.notices))
        assert [chat.title for chat in list_conversations(db, user)] == ["kept"]


async def test_a_chat_picked_after_another_duetto_removed_it_says_so(make_app, db) -> None:
    """The list shows a chat another duetto removed until the app's next look (each second);
    picking it raised NotFound out of the handler, and the app closed with a traceback."""
    chats_of_one_message(db, "removed elsewhere", "open")
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        sidebar = app.query_one(Sidebar)
        await wait_for(pilot, lambda: sidebar.titles() == ["open", "removed elsewhere"])
        assert app.conversation.title == "open"
        async with sidebar.showing:  # not while the app's look at other writes remakes the list
            picked = list(sidebar.query(ConversationItem))[1].conversation
        delete_conversation(db, picked.id)  # db: another connection, as another duetto's
        sidebar.post_message(Sidebar.Selected(picked))  # picked before the list caught up
        await wait_for(pilot, lambda: any("no longer there" in notice for notice in app.notices))
        assert app.is_running and app.conversation.title == "open"
        await wait_for(pilot, lambda: sidebar.titles() == ["open"])


async def test_ctrl_s_exports_the_open_chat_as_markdown(
    make_app, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "the cat sat")
        await pilot.press("ctrl+s")
        exported = tmp_path / f"duetto-chat-{app.conversation.id}.md"
        text = exported.read_text()
        assert text.startswith("# the cat sat\n") and "**You:**\n\nthe cat sat" in text
        assert shown(app)[1][1].rstrip() in text
        assert not list(tmp_path.glob(".*.partial")), "written whole, no leftovers"


async def test_a_system_prompt_is_chosen_for_a_chat_kept_as_a_persona_and_used_by_the_next_turn(make_app, db) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("f9")
        assert isinstance(app.screen, SystemPromptScreen)
        app.screen.query_one("#prompt-text").text = "You are a pirate."
        app.screen.query_one("#persona-name").value = "pirate"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, SystemPromptScreen))

        await send(pilot, app, "the cat sat")

        assert get_conversation(db, app.conversation.id).system_prompt == "You are a pirate."
        assert app.chats[app.conversation.id].system_prompt == "You are a pirate.", "the turn used it"
        assert [persona.name for persona in list_personas(db, ensure_user(db))] == ["pirate"]
        await pilot.press("alt+i")  # the chord: F-keys are often swallowed
        assert isinstance(app.screen, SystemPromptScreen)
        assert app.screen.query_one("#prompt-text").text == "You are a pirate."


async def test_up_brings_back_earlier_prompts_even_after_a_restart(make_app) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "alpha")
        await send(pilot, app, "beta")
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        prompt = app.query_one(PromptInput)
        prompt.focus()
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.text == "beta"
        await pilot.press("up")
        assert prompt.text == "alpha"
        await pilot.press("down")
        assert prompt.text == "beta"
        await pilot.press("down")
        assert prompt.text == "draft", "below the newest: the text being written, kept"


async def test_keys_rebound_in_keys_yaml_work_and_the_help_says_so(
    make_app, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(os.environ["DUETTO_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "keys.yaml").write_text("regenerate: alt+w\nhelp: [f1, ctrl+underscore]\n")
    app = make_app(temperature=1.0)
    async with app.run_test() as pilot:
        await send(pilot, app, "the cat sat")
        first_reply = shown(app)[1][1]
        await pilot.press("alt+w")
        await wait_for(pilot, lambda: not app.generating and shown(app)[1][1] != first_reply)

        await pilot.press("ctrl+underscore")
        assert isinstance(app.screen, HelpScreen)
        assert ("Alt+W", "write the last reply again (it is replaced)") in app.screen.rows
        assert ("F1 / Ctrl+_", "this help") in app.screen.rows
        assert not any(keys == "Ctrl+R" for keys, _ in app.screen.rows), "the default key gave way"


async def test_a_bad_keys_file_is_named_and_the_default_keys_stay(make_app) -> None:
    home = Path(os.environ["DUETTO_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "keys.yaml").write_text("regenrate: ctrl+r\n")
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        assert any("keys.yaml: no action named regenrate" in notice for notice in app.notices)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


async def test_long_titles_are_cut_between_words(make_app, db) -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await send(pilot, app, "how do I parse ISO dates with timezones in python without a library")
    [conversation] = list_conversations(db, ensure_user(db))
    assert conversation.title == "how do I parse ISO dates with…"


async def test_a_chat_keeps_its_model_pair_and_settings_and_can_switch_pair_mid_chat(
    tiny_models: dict[str, Path], tmp_path: Path, db
) -> None:
    def app_with_pairs() -> DuettoApp:
        app = tiny_chat_app(tiny_models, tmp_path / "chat.db", DecodeSettings(max_tokens=6))
        target_only = ModelPair(str(tiny_models["target"]), None)
        app.config = replace(app.config, pair_choices=lambda: [("tiny", app.config.pair), ("lookup", target_only)])
        return app

    app = app_with_pairs()
    async with app.run_test() as pilot:
        await send(pilot, app, "the cat sat")
        first_chat = app.conversation.id
        assert app.engine.has_draft_model
        await pilot.press("f10")
        assert isinstance(app.screen, PairScreen)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.engine is not None and not app.engine.has_draft_model)
        assert app.query_one(StatusBar).models == "target"
        await pilot.press("ctrl+t")  # exact → target: kept with this chat
        await send(pilot, app, "and the dog")
        assert list_messages(db, first_chat)[-1].stats["mode"] == "target"
        assert list_messages(db, first_chat)[-1].stats["drafted"] == 0

        await pilot.press("ctrl+n")
        await send(pilot, app, "a second chat")
        second_chat = app.conversation.id
        assert get_conversation(db, second_chat).settings["pair"]["draft"] is None, "new chats keep the pair in use"

    app = app_with_pairs()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await app.open_conversation(get_conversation(db, first_chat))
        await wait_for(pilot, lambda: app.engine is not None and app.engine_pair == app.wanted_pair)
        assert not app.engine.has_draft_model and app.settings.mode == "target", "reopened as it was answered"
        await pilot.press("f10", "up", "enter")
        await wait_for(pilot, lambda: app.engine is not None and app.engine.has_draft_model)
        await send(pilot, app, "back to the pair")
        assert list_messages(db, first_chat)[-1].stats["tokens"] >= 1
        assert get_conversation(db, first_chat).settings["pair"]["draft"] == str(tiny_models["draft"])


async def press_as_a_terminal_sends(pilot, app: DuettoApp, key: str, character: str) -> None:
    """A key as a real terminal delivers it: Alt+Y arrives with the character "y" (Textual's pilot
    sends none for a chord), which a text box with the focus would type."""
    app._driver.send_message(events.Key(key, character))
    await pilot.pause()


async def test_alt_chords_act_while_the_prompt_box_has_the_focus_and_are_not_typed(make_app, db) -> None:
    a_chat_with_code(db)
    app = make_app()
    copied: list[str] = []
    async with app.run_test() as pilot:
        await ready(pilot, app)
        app.copy_to_clipboard = copied.append
        prompt = app.query_one(PromptInput)
        prompt.focus()

        await press_as_a_terminal_sends(pilot, app, "alt+y", "y")
        assert copied == ["second = dict(sorted(d.items()))"] and prompt.text == ""
        await press_as_a_terminal_sends(pilot, app, "alt+i", "i")
        assert isinstance(app.screen, SystemPromptScreen) and prompt.text == ""


async def test_the_apps_keys_do_not_act_behind_an_open_dialog(
    make_app, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(temperature=1.0)
    async with app.run_test() as pilot:
        await send(pilot, app, "the cat sat")
        before = stored(db, app)
        await pilot.press("f2")  # the rename dialog
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        assert not app.generating and stored(db, app) == before, "no reply written behind the dialog"
        await pilot.press("escape")
        await pilot.press("f9")
        assert isinstance(app.screen, SystemPromptScreen)
        await pilot.press("ctrl+s")  # the dialog's own Ctrl+S (use), not the app's export
        await wait_for(pilot, lambda: not isinstance(app.screen, SystemPromptScreen))
        await pilot.pause(0.3)  # an export the key wrongly started would be written by now
        assert not list(tmp_path.glob("duetto-chat-*.md"))


async def test_an_imported_chat_with_odd_stats_opens(make_app, db, tmp_path: Path) -> None:
    export = tmp_path / "odd.json"
    export.write_text(
        '{"title": "odd", "messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "hello", "stats": {"citations": "abc"}}]}'
    )
    import_json(db, ensure_user(db), export)
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        assert shown(app) == [("user", "hi"), ("assistant", "hello")]


async def test_quick_turns_list_each_message_once_beside_the_look_at_other_writes(make_app) -> None:
    """The look at other processes' writes (every second) rebuilt the chat view between the awaits
    of a prompt being sent, and the view listed messages twice (20 shown, 14 stored)."""
    app = make_app()
    async with app.run_test() as pilot:
        await ready(pilot, app)
        for number in range(12):
            before = len(app.query_one(ChatView).messages())
            app.query_one(PromptInput).focus()
            app.query_one(PromptInput).text = f"prompt {number}"
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda at_least=before + 2: (
                    app.conversation is not None
                    and len(list_messages(app.db, app.conversation.id)) >= at_least  # the turn is stored
                    and not app.generating
                ),  # and its end shown
            )
            await pilot.pause(0.05)
            assert shows_what_is_stored(app), f"turn {number}: {shown(app)}"
