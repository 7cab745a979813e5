"""Pilot tests of the chat app's documents: paste to memory, the panel, answers with sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_app import shows_what_is_stored, tiny_chat_app, wait_for
from textual.widgets import Input, SelectionList, Static

from duetto.app.tui.app import DuettoApp
from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.dialogs import PasteScreen
from duetto.app.tui.documents_screen import ChunkScreen, DocumentsScreen, SourcesScreen
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import DecodeSettings
from duetto.store import conversation_memory as memory_store
from duetto.store import documents as document_store
from duetto.store.conversations import list_messages
from duetto.store.database import open_database

STORY = " ".join(
    ["The cat sat on a mat and then it ran to the door.", "A dog slept near the warm fire while the cat ran."] * 80
)


@pytest.fixture
def app(tiny_models: dict[str, Path], tmp_path: Path) -> DuettoApp:
    return tiny_chat_app(tiny_models, tmp_path / "chat.db", DecodeSettings(max_tokens=8), context_length=2048)


async def submit(pilot, app: DuettoApp, text: str) -> None:
    await wait_for(pilot, lambda: app.engine is not None)
    prompt = app.query_one(PromptInput)
    prompt.focus()
    prompt.text = text
    await pilot.press("enter")


async def test_a_long_paste_becomes_a_document_that_answers_with_sources(
    app: DuettoApp, tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    async with app.run_test() as pilot:
        await submit(pilot, app, STORY)
        await wait_for(pilot, lambda: isinstance(app.screen, PasteScreen))
        await pilot.press("d")
        db = open_database(tmp_path / "chat.db")
        await wait_for(pilot, lambda: any(d.complete for d in document_store.list_documents(db)))
        await wait_for(pilot, lambda: app.conversation is not None and memory_store.attached_documents(
            app.db, app.conversation.id))  # fmt: skip

        await submit(pilot, app, "where did the dog sleep?")
        await wait_for(pilot, lambda: len(app.query_one(ChatView).messages()) >= 2 and shows_what_is_stored(app))

        reply = list_messages(db, app.conversation.id)[-1]
        assert reply.role == "assistant" and reply.stats["citations"]
        assert "Sources:" in list(app.query_one(ChatView).messages())[-1].text
        assert reply.stats["document_tokens"] > reply.stats["prompt_tokens"] > 0
        assert "doc " in app.query_one(StatusBar).compression
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, SourcesScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChunkScreen))
        shown = str(app.screen.query_one("#chunk-text", Static).render())
        assert "cat" in shown

    reopened = tiny_chat_app(tiny_models, tmp_path / "chat.db", DecodeSettings(max_tokens=8), context_length=2048)
    async with reopened.run_test() as pilot:  # the next day: the chat shows its sources, and F7 opens them
        await wait_for(pilot, lambda: len(reopened.query_one(ChatView).messages()) >= 2)
        assert "Sources:" in list(reopened.query_one(ChatView).messages())[-1].text
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(reopened.screen, SourcesScreen))


async def test_declining_the_offer_sends_the_paste_as_a_prompt(app: DuettoApp, tmp_path: Path) -> None:
    async with app.run_test() as pilot:
        await submit(pilot, app, STORY)
        await wait_for(pilot, lambda: isinstance(app.screen, PasteScreen))
        await pilot.press("s")
        # The paste alone overflows this app's 2,048-token context: the reply fails, and says so.
        await wait_for(pilot, lambda: any("context holds 2048" in notice for notice in app.notices))
        await wait_for(pilot, lambda: shows_what_is_stored(app))
        assert [message.role for message in app.query_one(ChatView).messages()] == ["user"], "as stored"

        assert document_store.list_documents(open_database(tmp_path / "chat.db")) == []
        assert list_messages(app.db, app.conversation.id)[0].content == STORY


async def test_escape_on_the_offer_sends_nothing_and_gives_the_paste_back(app: DuettoApp, tmp_path: Path) -> None:
    async with app.run_test() as pilot:
        await submit(pilot, app, STORY)
        await wait_for(pilot, lambda: isinstance(app.screen, PasteScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PasteScreen))

        assert app.query_one(PromptInput).text == STORY
        assert not app.generating and app.conversation is None
        assert document_store.list_documents(open_database(tmp_path / "chat.db")) == []


async def give_the_panel_a_path(pilot, app: DuettoApp, path: Path, key: str = "f6") -> None:
    """Once the models are loaded, open the documents panel and give it ``path``, then Enter."""
    await wait_for(pilot, lambda: app.engine is not None)
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, DocumentsScreen))
    app.screen.query_one("#add-path", Input).value = str(path)
    app.screen.query_one("#add-path", Input).focus()
    await pilot.press("enter")


async def test_the_documents_panel_reads_a_file_and_attaches_documents(app: DuettoApp, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(STORY[:2000], encoding="utf-8")
    async with app.run_test() as pilot:
        await give_the_panel_a_path(pilot, app, notes)
        await wait_for(pilot, lambda: app.conversation is not None and memory_store.attached_documents(
            app.db, app.conversation.id))  # fmt: skip

        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, DocumentsScreen))
        selection = app.screen.query_one("#documents", SelectionList)
        assert selection.selected == [document_store.get_document(app.db, "notes").id]
        selection.deselect_all()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, DocumentsScreen))

        assert memory_store.attached_documents(app.db, app.conversation.id) == []


async def test_a_document_read_for_a_chat_deleted_meanwhile_is_kept_and_says_so(app: DuettoApp, tmp_path: Path) -> None:
    """F8 while a document is read into the open chat: the read ends on a chat that is gone (the
    attach raised IntegrityError out of the handler, and the app closed with a traceback)."""
    from duetto.app.core.documents import IngestResult
    from duetto.app.tui.document_desk import DocumentDesk, IngestFinished
    from duetto.store.conversations import create_conversation, delete_conversation, ensure_user

    notes = tmp_path / "notes.txt"
    notes.write_text(STORY[:2000], encoding="utf-8")
    async with app.run_test() as pilot:
        await give_the_panel_a_path(pilot, app, notes)
        await wait_for(pilot, lambda: any(d.complete for d in document_store.list_documents(app.db)))
        gone = create_conversation(app.db, ensure_user(app.db), "deleted while reading")
        delete_conversation(app.db, gone.id)
        # The read's end as the reading worker posts it, for the chat it began in.
        app.query_one(DocumentDesk).post_message(IngestFinished("notes", gone.id, IngestResult("notes", 10, 1, 5, 0.1)))
        await wait_for(pilot, lambda: any("its chat was deleted meanwhile" in notice for notice in app.notices))
        assert app.is_running and document_store.get_document(app.db, "notes").complete


async def test_a_file_that_is_not_text_is_a_notification(app: DuettoApp, tmp_path: Path) -> None:
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    async with app.run_test() as pilot:
        await give_the_panel_a_path(pilot, app, binary)
        await wait_for(pilot, lambda: any("binary" in notification for notification in app.notices))

        assert document_store.list_documents(app.db) == []


async def test_a_path_that_is_not_there_keeps_the_panel_open_with_the_path_typed(
    app: DuettoApp, tmp_path: Path
) -> None:
    missing = tmp_path / "notes" / "reprot.md"
    async with app.run_test() as pilot:
        await give_the_panel_a_path(pilot, app, missing)
        await pilot.pause()

        assert isinstance(app.screen, DocumentsScreen)
        assert app.screen.query_one("#add-path", Input).value == str(missing)
        assert f"No such file or folder: {missing}" in str(app.screen.query_one("#add-path-error").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DocumentsScreen))
        assert document_store.list_documents(app.db) == []


async def test_the_documents_panel_reads_a_folder_of_code_into_one_document(app: DuettoApp, tmp_path: Path) -> None:
    folder = tmp_path / "toolbox"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "tools.py").write_text(
        "def hammer(nail):\n    return nail + 1\n\n\ndef saw(board):\n    return board / 2\n"
    )
    (folder / "notes.md").write_text("# Toolbox\n\nThe hammer adds one to a nail.\n")
    async with app.run_test() as pilot:
        await give_the_panel_a_path(pilot, app, folder, key="ctrl+o")  # the chord for F6
        await wait_for(pilot, lambda: app.conversation is not None and memory_store.attached_documents(
            app.db, app.conversation.id))  # fmt: skip

        [document] = memory_store.attached_documents(app.db, app.conversation.id)
        assert document.name == "toolbox"
        chunks = document_store.list_chunks(app.db, [document.id])
        assert {chunk.file_path for chunk in chunks} == {"src/tools.py", "notes.md"}
