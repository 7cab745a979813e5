"""One request's generation: run on the worker thread, heard on the event loop.

The worker runs the core (``complete``, ``complete_text``, ``answer_from_documents``) and puts
what it writes on an asyncio queue through the loop's thread-safe door; the request's handler
takes it from there. A client that leaves sets ``cancelled``, which the decoder checks between
steps, so the worker is free for the next request within one step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from duetto.app.core.chat import complete, complete_text, runnable_settings
from duetto.app.core.questions import answer_from_documents
from duetto.app.server.errors import ApiError, invalid
from duetto.app.server.requests import CompletionRequest
from duetto.app.server.responses import Outcome
from duetto.app.server.worker import Engines
from duetto.engine.errors import EngineError
from duetto.engine.model_session import ContextFull
from duetto.engine.reply_stream import Written
from duetto.store.conversations import DEFAULT_USER, User, ensure_user, get_user
from duetto.store.database import open_database
from duetto.store.documents import get_document
from duetto.store.errors import NotFound, StoreError

log = logging.getLogger("duetto.serve")
DISCONNECT_POLL_SECONDS = 0.25


def document_owner(db, user: str) -> User:
    """The user whose documents a request may name (the default user is made on first use)."""
    return ensure_user(db) if user == DEFAULT_USER else get_user(db, user)


class ClientGone(Exception):
    """The client closed the connection before its reply began."""


Event = str | Outcome | ApiError
"""What a generation reports: a piece of text, the finished outcome, or the error that ended it."""


@dataclass(eq=False)  # each one is itself: the server keeps the live ones in a set
class Generation:
    request: CompletionRequest
    user: str
    """The duetto user the request is for: their documents, and (through ``engine_key``) their plugin."""
    engine_key: str | None
    loop: asyncio.AbstractEventLoop

    def __post_init__(self) -> None:
        self.cancelled = threading.Event()
        self._events: asyncio.Queue[Event] = asyncio.Queue()

    # --- on the worker thread ---------------------------------------------------------------

    def run(self, engines: Engines, database_path: Path | None) -> None:
        """Generate, reporting every piece of text and then the outcome or the error."""
        if self.cancelled.is_set():  # its client left while it waited, or the server is stopping
            self._emit(ApiError(503, "the server is stopping; retry shortly", code="server_stopping", retry_after=1))
            return
        try:
            outcome = self._generate(engines, database_path)
            if outcome.stats.finish_reason == "cancelled":
                log.info(
                    "a reply stopped after %d tokens (its client left, or the server is stopping)", outcome.stats.tokens
                )
            self._emit(outcome)
        except ApiError as error:
            self._emit(error)
        except ContextFull as error:
            self._emit(invalid(str(error), "messages", "context_length_exceeded"))
        except NotFound as error:
            self._emit(ApiError(404, str(error), code="not_found"))
        except (EngineError, StoreError) as error:
            self._emit(invalid(str(error)))
        except Exception as error:  # a bug: the server keeps serving, the log keeps the traceback
            log.exception("internal error")
            self._emit(ApiError(500, f"internal error: {error}", code="internal_error"))

    def _generate(self, engines: Engines, database_path: Path | None) -> Outcome:
        request = self.request
        engine = engines.get(self.engine_key)
        settings, _ = runnable_settings(
            request.settings, has_draft_model=engine.has_draft_model, documents=bool(request.documents)
        )
        listening = {"should_cancel": self.cancelled.is_set, "on_written": self._written}
        if request.documents:
            db = open_database(database_path)
            owner = document_owner(db, self.user)
            documents = [get_document(db, name, owner) for name in request.documents]
            reader, reader_model = engine.reader()
            answer = answer_from_documents(
                db, engine.decoder, reader, reader_model, documents, request.question, settings, **listening
            )
            citations = [
                {"document": c.document, "chunk": c.position, "variant": c.variant, "label": c.label}
                for c in answer.citations
            ]
            return Outcome(answer.text, answer.reply_stats, {"stats": answer.stats, "more": {"citations": citations}})
        if request.kind == "chat":
            reply = complete(
                engine.decoder, list(request.messages), settings, prediction=request.prediction, **listening
            )
        else:
            reply = complete_text(engine.decoder, request.prompt, settings, prediction=request.prediction, **listening)
        assert reply.stats is not None
        return Outcome(reply.text, reply.stats)

    def _written(self, written: Written) -> None:
        if written.text:
            self._emit(written.text)

    def _emit(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server stopped, nobody is listening
            self.cancelled.set()

    # --- on the event loop ------------------------------------------------------------------

    async def next(self) -> Event:
        return await self._events.get()

    async def next_watching(self, http_request: Request) -> Event:
        """The next event, cancelling the generation if the client leaves meanwhile (used before
        a response has begun: once a stream runs, Starlette itself notices a client leaving)."""
        while True:
            try:
                return await asyncio.wait_for(self._events.get(), DISCONNECT_POLL_SECONDS)
            except asyncio.TimeoutError:
                if await http_request.is_disconnected():
                    self.cancelled.set()
                    raise ClientGone from None
