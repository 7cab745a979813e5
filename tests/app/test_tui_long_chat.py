"""A long chat in the app folds old turns into memory, stored and picked up after a restart."""

from __future__ import annotations

from pathlib import Path

from chat_app import shows_what_is_stored, tiny_chat_app, wait_for

from duetto.app.core.chat import StoredChat
from duetto.app.tui.app import DuettoApp
from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.prompt_input import PromptInput
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversation_memory import load_memory
from duetto.store.conversations import list_messages

SENTENCE = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire"
WORDS = SENTENCE.split(" ")


def make_app(tiny_models: dict[str, Path], database: Path) -> DuettoApp:
    return tiny_chat_app(tiny_models, database, DecodeSettings(max_tokens=16, drafter="lookup"))


async def chat(pilot, app: DuettoApp, turns: range) -> None:
    await wait_for(pilot, lambda: app.engine is not None, timeout=60)
    for turn in turns:
        blocks = len(app.query_one(ChatView).messages())
        prompt = app.query_one(PromptInput)
        prompt.focus()
        prompt.text = " ".join(WORDS[(turn + offset) % len(WORDS)] for offset in range(12))
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda shown=blocks + 2: len(app.query_one(ChatView).messages()) >= shown and shows_what_is_stored(app),
            timeout=60,
        )


async def test_a_long_chat_keeps_its_memory_across_a_restart(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    first = make_app(tiny_models, database)
    async with first.run_test() as pilot:
        await chat(pilot, first, range(24))
        await pilot.pause(0.1)
        conversation_id = first.conversation.id
        messages = list_messages(first.db, conversation_id)
        memory = load_memory(first.db, conversation_id)
        window = first.chats[conversation_id].session.window
        prompt = window.prompt_tokens([{"role": m.role, "content": m.content} for m in messages], 16)

    assert memory is not None and memory.texts == window.memory_texts
    assert [m.id for m in messages].index(memory.through_message_id) + 1 == window.folded_messages > 0
    assert len(prompt) + 16 <= 512

    second = make_app(tiny_models, database)
    async with second.run_test() as pilot:
        await chat(pilot, second, range(0))  # waits for the engine
        restored = StoredChat(second.engine, conversation_id, database_path=database).session.window
        assert (restored.folded_messages, restored.memory_texts) == (window.folded_messages, window.memory_texts)
        restored_prompt = restored.prompt_tokens([{"role": m.role, "content": m.content} for m in messages], 16)
        assert restored_prompt == prompt
        await chat(pilot, second, range(24, 26))
