"""The chat app's document work: reading documents in, attaching them to a chat, showing sources.

A widget with no view of its own, mounted in the app, that owns this work and its state: reading
runs in a thread worker with its own database connection (a connection belongs to the thread
that opened it), and progress and results come back to it as messages. Answering from attached
documents is a chat turn like any other (app/core/chat.py).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from textual import work
from textual.message import Message
from textual.widget import Widget
from textual.worker import get_current_worker

from duetto.app.core.documents import IngestResult, decode_document, ingest_document
from duetto.app.core.folders import FolderResult, ingest_folder
from duetto.app.core.wording import plural
from duetto.app.tui.documents_screen import ChunkScreen, DocumentsChoice, DocumentsScreen, SourcesScreen
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.errors import EngineError
from duetto.store import conversation_memory as memory_store
from duetto.store import documents as document_store
from duetto.store.conversations import create_conversation
from duetto.store.database import open_database
from duetto.store.errors import StoreError

PASTE_DOCUMENT_CHARACTERS = 6000
"""A paste longer than this (about 1,500 tokens) is offered to be kept as a document."""


class IngestProgress(Message):
    def __init__(self, name: str, done: int, total: int) -> None:
        super().__init__()
        self.name, self.done, self.total = name, done, total


class IngestFinished(Message):
    def __init__(
        self, name: str, conversation_id: int | None, result: IngestResult | FolderResult | None, error: str = ""
    ) -> None:
        super().__init__()
        self.name, self.conversation_id, self.result, self.error = name, conversation_id, result, error


class DocumentDesk(Widget):
    """Reads from the app what it shows and writes to: ``db``, ``user``, ``conversation``,
    ``engine`` (whose small model reads), ``config.database_path`` and ``refresh_sidebar``."""

    DEFAULT_CSS = "DocumentDesk { display: none; }"

    def __init__(self) -> None:
        super().__init__()
        self.last_sources: list[tuple[int, str]] = []
        """(chunk id, label) of what the last document answer cited, for F7."""

    # --- reading documents in ---------------------------------------------------------------

    def offer_paste_as_document(self, text: str, send) -> None:
        from duetto.app.tui.dialogs import PasteScreen
        from duetto.app.tui.prompt_input import PromptInput

        async def answer(choice: str | None) -> None:
            if choice == "document":
                name = "paste " + dt.datetime.now().strftime("%Y-%m-%d %H.%M.%S")
                self.start_ingest(name, text.encode("utf-8"), "paste")
            elif choice == "send":
                await send(text)
            else:  # cancelled: nothing is sent, and the paste is back where it was typed
                self.app.query_one(PromptInput).text = text

        self.app.push_screen(PasteScreen(len(text.split())), answer)

    def start_ingest(self, name: str, data: bytes, source: str | None) -> None:
        try:
            text = decode_document(data, source or name)
            document_store.validate_document_name(name)
        except StoreError as error:
            self.notify(str(error), title="Cannot keep this document", severity="error", timeout=15)
            return
        owner = self.app.user

        def read(db, reader, model_id, progress, cancelled):
            return ingest_document(db, reader, model_id, name, text, source=source, on_progress=progress,
                                   should_cancel=cancelled, owner=owner)  # fmt: skip

        self.start_reading(name, read)

    def start_folder_ingest(self, folder: Path) -> None:
        """Read a folder in (or bring it up to date) as one document, as ``duetto docs add FOLDER`` does."""
        name = folder.resolve().name
        try:
            document_store.validate_document_name(name)
        except StoreError as error:
            self.notify(f"{error} (rename the folder, or use duetto docs add --name)", severity="error", timeout=15)
            return
        owner = self.app.user

        def read(db, reader, model_id, progress, cancelled):
            return ingest_folder(db, reader, model_id, name, folder, on_progress=progress, should_cancel=cancelled,
                                 owner=owner)  # fmt: skip

        self.start_reading(name, read)

    def start_reading(self, name: str, read) -> None:
        """Run ``read`` (a file's or a folder's) once the models are loaded, for the open chat."""
        if self.app.engine is None:
            self.notify("The models are still loading; add the document once they are.", severity="warning")
            return
        conversation_id = self.app.conversation.id if self.app.conversation else None
        self.app.query_one(StatusBar).state = f"reading {name}…"
        self.ingest(name, read, conversation_id)

    @work(thread=True, group="ingest")
    def ingest(self, name: str, read, conversation_id: int | None) -> None:
        """Run ``read(db, reader, model_id, on_progress, should_cancel)`` (a file's or a folder's) in a thread."""
        worker = get_current_worker()
        try:
            reader, model_id = self.app.engine.reader()
            db = open_database(self.app.config.database_path)
            result = read(
                db, reader, model_id, lambda done, total: self.post_message(IngestProgress(name, done, total)),
                lambda: worker.is_cancelled,
            )  # fmt: skip
        except (EngineError, StoreError, InterruptedError) as error:
            self.post_message(IngestFinished(name, conversation_id, None, str(error)))
            return
        self.post_message(IngestFinished(name, conversation_id, result))

    def on_ingest_progress(self, message: IngestProgress) -> None:
        self.app.query_one(StatusBar).state = f"reading {message.name}: {message.done}/{plural(message.total, 'chunk')}"

    async def on_ingest_finished(self, message: IngestFinished) -> None:
        app = self.app
        app.query_one(StatusBar).state = ""
        if message.result is None:
            self.notify(message.error, title=f"Reading {message.name} failed", severity="error", timeout=30)
            return
        started_chat = message.conversation_id is None and app.conversation is None
        if started_chat:
            app.conversation = create_conversation(app.db, app.user, f"About {message.name}")
        # Taken before any await: this handler runs beside the app's own, and a chat opened (or
        # Ctrl+N) meanwhile would otherwise get the document, or find no chat at all.
        conversation_id = message.conversation_id or app.conversation.id
        document = document_store.get_document(app.db, message.name, app.user)
        try:
            memory_store.attach_document(app.db, conversation_id, document.id)
        except (StoreError, sqlite3.IntegrityError):  # the chat was deleted while the document was read
            self.notify(f"{message.name} is kept, but its chat was deleted meanwhile: F6 attaches it to another.",
                        severity="warning", timeout=15)  # fmt: skip
            return
        if started_chat:
            await app.list_new_chat()
        result = message.result
        self.notify(
            f"{result.name}: {plural(result.tokens, 'token')} in {plural(result.chunks, 'chunk')}, "
            f"read in {result.seconds:.0f} s. "
            "Attached to this chat: ask about it.",
            title="Document kept",
        )

    # --- the documents panel ---------------------------------------------------------------

    def open_panel(self) -> None:
        app = self.app
        if app.user is None:
            return
        chat_id = app.conversation.id if app.conversation else None  # the chat the panel is for
        attached = {d.id for d in memory_store.attached_documents(app.db, chat_id)} if chat_id else set()

        async def chosen(choice: DocumentsChoice | None) -> None:
            if choice is not None:
                await self.apply_documents_choice(choice, attached, chat_id)

        app.push_screen(DocumentsScreen(document_store.list_documents(app.db, app.user), attached), chosen)

    async def apply_documents_choice(self, choice: DocumentsChoice, attached: set[int], chat_id: int | None) -> None:
        """Attach and detach for the chat the panel was opened on (``chat_id``; None: a new chat),
        whichever is open now: ``attached`` is that chat's."""
        app = self.app
        open_id = app.conversation.id if app.conversation else None
        if choice.attached != attached and open_id != chat_id:  # another duetto removed it meanwhile
            self.notify("The chat these documents were for is gone; nothing was attached.", severity="warning")
        elif choice.attached != attached:
            started_chat = chat_id is None
            if started_chat:
                app.conversation = create_conversation(app.db, app.user, "About documents")
            conversation_id = app.conversation.id  # taken before any await, as above
            for document_id in choice.attached - attached:
                memory_store.attach_document(app.db, conversation_id, document_id)
            for document_id in attached - choice.attached:
                memory_store.detach_document(app.db, conversation_id, document_id)
            names = [d.name for d in memory_store.attached_documents(app.db, conversation_id)]
            self.notify("Answers come from: " + ", ".join(names) if names else "No documents attached.")
            if started_chat:
                await app.list_new_chat()
        if choice.add_path:
            path = Path(choice.add_path).expanduser()
            if path.is_dir():
                self.start_folder_ingest(path)
                return
            try:
                data = path.read_bytes()
            except OSError as error:
                self.notify(f"cannot read {path}: {error.strerror}", severity="error", timeout=15)
                return
            self.start_ingest(path.stem, data, str(path.resolve()))

    # --- what answers cited ------------------------------------------------------------------

    def show_sources(self, sources: list[tuple[int, str]]) -> None:
        """Remember what a document answer cited, as (chunk id, label), for ``open_sources`` (F7)."""
        self.last_sources = list(sources)

    def open_sources(self) -> None:
        if not self.last_sources:
            self.notify("No document answer in this chat yet.")
            return

        def chosen(chunk_id: int | None) -> None:
            if chunk_id is None:
                return
            label = dict(self.last_sources)[chunk_id]
            chunk = document_store.get_chunk(self.app.db, chunk_id)
            if chunk is None:
                self.notify("That document was removed.", severity="warning")
                return
            self.app.push_screen(ChunkScreen(label, chunk))

        self.app.push_screen(SourcesScreen(self.last_sources), chosen)
