"""Snapshots of the chat app's main screens, with a deterministic configuration.

Regenerate after an intended change of the look: pytest tests/app/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_app import tiny_chat_app

from duetto.app.tui.app import DuettoApp
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversations import add_message, create_conversation, ensure_user
from duetto.store.database import open_database

SIZE = (100, 28)


@pytest.fixture
def chat_app(tiny_models: dict[str, Path], tmp_path: Path):
    def factory(with_history: bool = False) -> DuettoApp:
        database_path = tmp_path / "chat.db"
        if with_history:
            db = open_database(database_path)
            user = ensure_user(db)
            for title in ("Sorting a dict", "Regex for dates"):
                chat = create_conversation(db, user, title)
                add_message(db, chat.id, "user", f"Question about {title.lower()}?")
                add_message(
                    db, chat.id, "assistant", "Use `sorted(d.items(), key=lambda item: item[1])`.\n\n- one\n- two"
                )

        return tiny_chat_app(tiny_models, database_path, DecodeSettings(), context_length=256)

    return factory


async def engine_loaded(pilot) -> None:
    while pilot.app.engine is None:
        await pilot.pause(0.05)
    await pilot.pause()


def test_first_start(snap_compare, chat_app) -> None:
    assert snap_compare(chat_app(), terminal_size=SIZE, run_before=engine_loaded)


def test_conversations_and_a_reply(snap_compare, chat_app) -> None:
    assert snap_compare(chat_app(with_history=True), terminal_size=SIZE, run_before=engine_loaded)


def test_help(snap_compare, chat_app) -> None:
    assert snap_compare(chat_app(), press=["f1"], terminal_size=SIZE, run_before=engine_loaded)


def test_settings(snap_compare, chat_app) -> None:
    assert snap_compare(chat_app(), press=["f3"], terminal_size=SIZE, run_before=engine_loaded)


def test_users(snap_compare, chat_app) -> None:
    assert snap_compare(chat_app(with_history=True), press=["f4"], terminal_size=SIZE, run_before=engine_loaded)


def test_documents_panel(snap_compare, chat_app, tmp_path: Path) -> None:
    import numpy as np

    from duetto.store import documents as document_store

    db = open_database(tmp_path / "chat.db")
    for name, tokens in (("meeting notes", 4133), ("lease agreement", 8763)):
        document = document_store.begin_document(db, name, None, name, tokens)
        document_store.add_chunk(db, document.id, 0, "text", (0, tokens), "text", 1, np.zeros(4), "model")
        document_store.mark_complete(db, document.id)

    async def open_documents(pilot) -> None:
        await engine_loaded(pilot)
        await pilot.press("f6")
        await pilot.pause()

    assert snap_compare(chat_app(), terminal_size=SIZE, run_before=open_documents)


def test_system_prompt(snap_compare, chat_app) -> None:
    assert snap_compare(chat_app(), press=["f9"], terminal_size=SIZE, run_before=engine_loaded)


def test_a_selected_reply_and_the_search_box(snap_compare, chat_app) -> None:
    async def select_reply(pilot) -> None:
        await engine_loaded(pilot)
        await pilot.press("shift+tab")
        await pilot.pause()

    assert snap_compare(chat_app(with_history=True), terminal_size=SIZE, run_before=select_reply)
