"""A long chat in the app folds old turns into memory, stored and picked up after a restart."""

from __future__ import annotations

import time
from pathlib import Path

from duetto.app.engine_loader import reader_for
from duetto.app.tui.app import SYSTEM_PROMPT, ChatConfig, DuettoApp
from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.prompt_input import PromptInput
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ModelSession
from duetto.store.conversation_memory import load_memory
from duetto.store.conversations import list_messages

SENTENCE = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire"
WORDS = SENTENCE.split(" ")


def make_app(tiny_models: dict[str, Path], database: Path) -> DuettoApp:
    return DuettoApp(
        ChatConfig(
            engine_factory=lambda user: Decoder(ModelSession(tiny_models["target"], context_length=512, threads=1)),
            models_label="target",
            settings=DecodeSettings(max_tokens=16, drafter="lookup"),
            database_path=database,
            reader_factory=lambda: reader_for(tiny_models["draft"], threads=1),
        )
    )


async def chat(pilot, app: DuettoApp, turns: range) -> None:
    deadline = time.monotonic() + 20
    while app.decoder is None:
        assert time.monotonic() < deadline
        await pilot.pause(0.02)
    for turn in turns:
        deadline = time.monotonic() + 20
        blocks = len(app.query_one(ChatView).messages())
        prompt = app.query_one(PromptInput)
        prompt.focus()
        prompt.text = " ".join(WORDS[(turn + offset) % len(WORDS)] for offset in range(12))
        await pilot.press("enter")
        while app.generating or len(app.query_one(ChatView).messages()) < blocks + 2:
            assert time.monotonic() < deadline
            await pilot.pause(0.02)


async def test_a_long_chat_keeps_its_memory_across_a_restart(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    first = make_app(tiny_models, database)
    async with first.run_test() as pilot:
        await chat(pilot, first, range(24))
        await pilot.pause(0.1)
        conversation_id = first.conversation.id
        messages = list_messages(first.db, conversation_id)
        memory = load_memory(first.db, conversation_id)
        (window,) = first.__dict__["_windows"].values()
        prompt = window.prompt_tokens([{"role": m.role, "content": m.content} for m in messages], 16)

    assert memory is not None and memory.texts == window.memory_texts
    assert [m.id for m in messages].index(memory.through_message_id) + 1 == window.folded_messages > 0
    assert len(prompt) + 16 <= 512

    second = make_app(tiny_models, database)
    async with second.run_test() as pilot:
        await chat(pilot, second, range(0))  # waits for the engine
        restored = second.conversation_window(
            second.decoder, conversation_id, SYSTEM_PROMPT, load_memory(second.db, conversation_id),
            [m.id for m in messages],
        )  # fmt: skip
        assert (restored.folded_messages, restored.memory_texts) == (window.folded_messages, window.memory_texts)
        restored_prompt = restored.prompt_tokens([{"role": m.role, "content": m.content} for m in messages], 16)
        assert restored_prompt == prompt
        await chat(pilot, second, range(24, 26))
