"""The chat app's document work: reading documents in, answering from them, showing sources.

A mixin of DuettoApp, kept apart so the app module stays about conversations. Reading and
answering run in thread workers with their own database connection (a connection belongs
to the thread that opened it); progress and results come back as messages.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from textual import work
from textual.message import Message
from textual.worker import get_current_worker

from duetto.app.document_memory import (
    DocumentAnswer,
    IngestResult,
    answer_from_documents,
    decode_document,
    ingest_document,
)
from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.documents_screen import ChunkScreen, DocumentsChoice, DocumentsScreen, SourcesScreen
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import DecodeSettings
from duetto.engine.document_reader import DocumentReader
from duetto.engine.errors import EngineError
from duetto.engine.reply_stream import Written
from duetto.engine.stats import LiveRate
from duetto.store import conversation_memory as memory_store
from duetto.store import documents as document_store
from duetto.store.database import open_database
from duetto.store.errors import StoreError

PASTE_DOCUMENT_CHARACTERS = 6000
"""A paste longer than this (about 1,500 tokens) is offered to be kept as a document."""


class IngestProgress(Message):
    def __init__(self, name: str, done: int, total: int) -> None:
        super().__init__()
        self.name, self.done, self.total = name, done, total


class IngestFinished(Message):
    def __init__(self, name: str, conversation_id: int | None, result: IngestResult | None, error: str = "") -> None:
        super().__init__()
        self.name, self.conversation_id, self.result, self.error = name, conversation_id, result, error


class DocumentAnswered(Message):
    def __init__(self, conversation_id: int, answer: DocumentAnswer | None, error: str = "") -> None:
        super().__init__()
        self.conversation_id, self.answer, self.error = conversation_id, answer, error


class DocumentActions:
    """Needs from the app: ``db``, ``user``, ``conversation``, ``decoder``, ``config`` (with a
    ``reader_factory``), ``generating``, ``notify`` and ``query_one``."""

    _reader: tuple[DocumentReader, str] | None = None
    _reader_lock = threading.Lock()
    last_sources: list[tuple[int, str]] = []

    # --- the small model as reader ---------------------------------------------------------

    def reader(self) -> tuple[DocumentReader, str]:
        """The document reader and its model id, loaded on first use (from a worker thread)."""
        with self._reader_lock:
            if self._reader is None:
                if self.config.reader_factory is None:
                    raise EngineError("no small model to read documents with")
                self._reader = self.config.reader_factory()
            return self._reader

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
                self.query_one(PromptInput).text = text

        self.push_screen(PasteScreen(len(text.split())), answer)

    def start_ingest(self, name: str, data: bytes, source: str | None) -> None:
        try:
            text = decode_document(data, source or name)
            document_store.validate_document_name(name)
        except StoreError as error:
            self.notify(str(error), title="Cannot keep this document", severity="error", timeout=15)
            return
        conversation_id = self.conversation.id if self.conversation else None
        self.query_one(StatusBar).state = f"reading {name}…"
        self.ingest(name, text, source, conversation_id)

    @work(thread=True, group="ingest")
    def ingest(self, name: str, text: str, source: str | None, conversation_id: int | None) -> None:
        worker = get_current_worker()
        try:
            reader, model_id = self.reader()
            db = open_database(self.config.database_path)
            result = ingest_document(
                db, reader, model_id, name, text, source=source,
                on_progress=lambda done, total: self.post_message(IngestProgress(name, done, total)),
                should_cancel=lambda: worker.is_cancelled,
            )  # fmt: skip
        except (EngineError, StoreError, InterruptedError) as error:
            self.post_message(IngestFinished(name, conversation_id, None, str(error)))
            return
        self.post_message(IngestFinished(name, conversation_id, result))

    def on_ingest_progress(self, message: IngestProgress) -> None:
        self.query_one(StatusBar).state = f"reading {message.name}: {message.done}/{message.total} chunks"

    async def on_ingest_finished(self, message: IngestFinished) -> None:
        status = self.query_one(StatusBar)
        status.state = ""
        if message.result is None:
            self.notify(message.error, title=f"Reading {message.name} failed", severity="error", timeout=30)
            return
        if message.conversation_id is None and self.conversation is None:
            from duetto.store.conversations import create_conversation

            self.conversation = create_conversation(self.db, self.user, f"About {message.name}")
            await self.refresh_sidebar()
        conversation_id = message.conversation_id or self.conversation.id
        document = document_store.get_document(self.db, message.name)
        memory_store.attach_document(self.db, conversation_id, document.id)
        result = message.result
        self.notify(
            f"{result.name}: {result.tokens} tokens in {result.chunks} chunks, read in {result.seconds:.0f} s. "
            "Attached to this chat: ask about it.",
            title="Document kept",
        )

    # --- the documents panel ---------------------------------------------------------------

    def action_documents(self) -> None:
        if self.user is None:
            return
        attached = (
            {d.id for d in memory_store.attached_documents(self.db, self.conversation.id)}
            if self.conversation
            else set()
        )

        async def chosen(choice: DocumentsChoice | None) -> None:
            if choice is not None:
                await self.apply_documents_choice(choice, attached)

        self.push_screen(DocumentsScreen(document_store.list_documents(self.db), attached), chosen)

    async def apply_documents_choice(self, choice: DocumentsChoice, attached: set[int]) -> None:
        if choice.attached != attached:
            if self.conversation is None:
                from duetto.store.conversations import create_conversation

                self.conversation = create_conversation(self.db, self.user, "About documents")
                await self.refresh_sidebar()
            for document_id in choice.attached - attached:
                memory_store.attach_document(self.db, self.conversation.id, document_id)
            for document_id in attached - choice.attached:
                memory_store.detach_document(self.db, self.conversation.id, document_id)
            names = [d.name for d in memory_store.attached_documents(self.db, self.conversation.id)]
            self.notify("Answers come from: " + ", ".join(names) if names else "No documents attached.")
        if choice.add_path:
            path = Path(choice.add_path).expanduser()
            try:
                data = path.read_bytes()
            except OSError as error:
                self.notify(f"cannot read {path}: {error.strerror}", severity="error", timeout=15)
                return
            self.start_ingest(path.stem, data, str(path.resolve()))

    # --- answering from documents ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="generate")
    def generate_document_reply(self, conversation_id: int, question: str, settings: DecodeSettings) -> None:
        from duetto.app.tui.app import ReplyDelta

        worker = get_current_worker()
        decoder = self.decoder
        rate = LiveRate()
        try:
            reader, model_id = self.reader()
            db = open_database(self.config.database_path)
            documents = memory_store.attached_documents(db, conversation_id)

            def on_written(written: Written) -> None:
                if written.text:
                    spans = [(piece.source, piece.text) for piece in written.pieces]
                    self.post_message(ReplyDelta(written.text, spans, rate.update(written.reply_tokens)))

            answer = answer_from_documents(
                db, decoder, reader, model_id, documents, question, settings, on_written=on_written,
                should_cancel=lambda: worker.is_cancelled,
            )  # fmt: skip
        except (EngineError, StoreError) as error:
            self.post_message(DocumentAnswered(conversation_id, None, str(error)))
            return
        self.post_message(DocumentAnswered(conversation_id, answer))

    async def on_document_answered(self, message: DocumentAnswered) -> None:
        from duetto.app.tui.app import ReplyFinished

        answer = message.answer
        if answer is None:
            await self.on_reply_finished(ReplyFinished(message.conversation_id, None, message.error))
            return
        if answer.citations:
            labels = ", ".join(citation.label for citation in answer.citations)
            await self.query_one(ChatView).append_reply(f"\n\n*Sources: {labels} (F7 opens them)*")
        self.last_sources = [(citation.chunk_id, citation.label) for citation in answer.citations]
        stats = answer.stats
        self.query_one(StatusBar).compression = f"doc {stats['document_tokens']} → read {stats['prompt_tokens']} tokens"
        await self.on_reply_finished(ReplyFinished(message.conversation_id, answer.reply_stats, stored_stats=stats))

    def action_sources(self) -> None:
        if not self.last_sources:
            self.notify("No document answer yet in this session.")
            return

        def chosen(chunk_id: int | None) -> None:
            if chunk_id is None:
                return
            label = dict(self.last_sources)[chunk_id]
            chunk = document_store.get_chunk(self.db, chunk_id)
            if chunk is None:
                self.notify("That document was removed.", severity="warning")
                return
            self.push_screen(ChunkScreen(label, chunk))

        self.push_screen(SourcesScreen(self.last_sources), chosen)
