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

from duetto.app.core.chat import Listeners, complete, complete_text, runnable_settings
from duetto.app.core.questions import answer_from_documents
from duetto.app.server.errors import ApiError, invalid
from duetto.app.server.requests import CompletionRequest
from duetto.app.server.responses import Outcome
from duetto.app.server.worker import Engines
from duetto.engine.errors import EngineError
from duetto.engine.model_session import ContextFull
from duetto.engine.reply_stream import Written
from duetto.store.conversations import named_user
from duetto.store.database import open_database
from duetto.store.documents import get_document
from duetto.store.errors import NotFound, StorageFailed, StoreError

log = logging.getLogger("duetto.serve")
DISCONNECT_POLL_SECONDS = 0.25
SEND_WAIT_SECONDS = 0.05
"""How long the worker waits for a streamed piece to be written before it decodes on."""


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
        self._sent = threading.Event()

    # --- on the worker thread ---------------------------------------------------------------

    def run(self, engines: Engines, database_path: Path | None) -> None:
        """Generate, reporting every piece of text and then the outcome or the error."""
        if self.cancelled.is_set():  # its client left while it waited, or the server is stopping
            self._emit(ApiError(503, "the server is stopping; retry shortly", code="server_stopping", retry_after=1))
            return
        try:
            outcome = self._generate(engines, database_path)
            if outcome.stats.finish_reason == "cancelled":
                # Its client left (nobody hears this), or the server is stopping: a reply cut short
                # must not look finished to a client that would apply it (an editor's edit).
                log.info("a reply stopped after %d tokens", outcome.stats.tokens)
                self._emit(ApiError(503, "the server stopped this reply before its end; retry shortly",
                                    code="server_stopping", retry_after=1))  # fmt: skip
                return
            self._emit(outcome)
        except ApiError as error:
            self._emit(error)
        except ContextFull as error:
            self._emit(invalid(str(error), "messages", "context_length_exceeded"))
        except NotFound as error:
            self._emit(ApiError(404, str(error), code="not_found"))
        except StorageFailed as error:  # the server's disk, not the request: a 507 the client can report
            self._emit(ApiError(507, str(error), code="insufficient_storage"))
        except (EngineError, StoreError) as error:
            self._emit(invalid(str(error)))
        except Exception as error:  # a bug: the server keeps serving, the log keeps the traceback
            log.exception("internal error")
            self._emit(ApiError(500, f"internal error: {error}", code="internal_error"))

    def _generate(self, engines: Engines, database_path: Path | None) -> Outcome:
        request = self.request
        engine = engines.get(self.engine_key)
        if changed := engine.refresh_plugin():  # trained again (or removed) while the server runs
            log.info("%s: %s", self.user, changed)
        settings, _ = runnable_settings(
            request.settings, has_draft_model=engine.has_draft_model, documents=bool(request.documents)
        )
        listeners = Listeners(should_cancel=self.cancelled.is_set, on_written=self._written)
        if request.documents:
            db = open_database(database_path)
            owner = named_user(db, self.user)
            documents = [get_document(db, name, owner) for name in request.documents]
            reader, reader_model = engine.reader()
            answer = answer_from_documents(
                db, engine.decoder, reader, reader_model, documents, request.question, settings,
                should_cancel=listeners.should_cancel, on_written=listeners.on_written,
            )  # fmt: skip
            citations = [
                {"document": c.document, "chunk": c.position, "variant": c.variant, "label": c.label}
                for c in answer.citations
            ]
            return Outcome(answer.text, answer.reply_stats, {"stats": answer.stats, "more": {"citations": citations}})
        if request.kind == "chat":  # the messages whole, as sent: none dropped to fit (ContextFull: a 400)
            reply = complete(engine.decoder, list(request.messages), settings, listeners,
                             prediction=request.prediction, fit=False)  # fmt: skip
        else:
            reply = complete_text(engine.decoder, request.prompt, settings, listeners, prediction=request.prediction)
        assert reply.stats is not None
        return Outcome(reply.text, reply.stats)

    def _written(self, written: Written) -> None:
        """A step's text goes to a streaming client, and the worker waits (briefly) until it is
        written: the event loop's turn then falls between two evaluations instead of taking a
        core from llama.cpp's threads in the middle of one (on 2 cores that cost ~3-5% of the
        decoding rate). A request that is not streamed gets its text with the outcome."""
        if written.text and self.request.stream:
            self._emit(written.text)
            self._sent.wait(SEND_WAIT_SECONDS)
            self._sent.clear()

    def _emit(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server stopped, nobody is listening
            self.cancelled.set()

    # --- on the event loop ------------------------------------------------------------------

    async def next(self) -> Event:
        return await self._events.get()

    def sent(self) -> None:
        """The last piece of text is written to the client: the worker may decode on."""
        self._sent.set()

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
