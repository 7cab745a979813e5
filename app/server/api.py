"""The HTTP face of ``duetto serve``: OpenAI's routes on Starlette, over the core.

Starlette rather than FastAPI: the routes are few and their bodies are checked by hand into the
core's own types (app/server/requests.py), so FastAPI's pydantic models would describe the same
thing a second time; Starlette (which FastAPI is built on) gives routing, streaming responses
that notice a client leaving, and uvicorn serves it. (Starlette's own body limit answers in plain
text; this server's limit answers in OpenAI's shape.)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from duetto.app.server.errors import ApiError, invalid
from duetto.app.server.generation import ClientGone, Generation
from duetto.app.server.requests import CompletionRequest, chat_request, text_request
from duetto.app.server.responses import DONE, Outcome, Shapes, event
from duetto.app.server.worker import Engines, Worker
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversations import DEFAULT_USER, named_user
from duetto.store.database import open_database
from duetto.store.documents import get_document
from duetto.store.errors import NotFound, StorageFailed, StoreError

log = logging.getLogger("duetto.serve")
MAX_BODY_BYTES = 8 * 1024 * 1024
"""A request body larger than this is refused (413): more than a 32k-token context holds anyway."""
MAX_WAITING = 8
"""Requests that may wait behind the running one before the server answers 503."""


@dataclass
class ServerConfig:
    model_ids: tuple[str, ...]
    """The names ``/v1/models`` lists and requests may name (the target's, then aliases)."""
    defaults: DecodeSettings
    """The settings a request starts from (``duetto serve``'s decoding options)."""
    user: str | None = None
    """Whose plugin and documents serve requests that name no user (``--user``)."""
    api_key: str | None = None
    database_path: Path | None = None
    max_waiting: int = MAX_WAITING
    created: int = 0


def create_app(config: ServerConfig, engines: Engines) -> Starlette:
    worker = Worker(config.max_waiting)
    server = _Server(config, engines, worker)
    routes = [
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", server.model, methods=["GET"]),
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/v1/completions", server.completions, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, ApiError: _api_error, Exception: _internal_error},
    )
    app.state.worker = worker
    app.state.stop_generations = server.stop_generations
    return app


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    log.info("%s %s %d: %s", request.method, request.url.path, error.status, error.message)
    return error.response()


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    messages = {
        404: f"no route {request.url.path}; duetto serves /v1/models, /v1/chat/completions, /v1/completions, /health",
        405: f"{request.method} is not allowed on {request.url.path}",
    }
    api_error = ApiError(error.status_code, messages.get(error.status_code, str(error.detail)))
    return await _api_error(request, api_error)


def _too_large() -> ApiError:
    return ApiError(
        413, f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB", code="body_too_large"
    )


async def _internal_error(request: Request, error: Exception) -> Response:
    log.exception("%s %s: internal error", request.method, request.url.path)
    return ApiError(500, f"internal error: {error}", code="internal_error").response()


class _Server:
    def __init__(self, config: ServerConfig, engines: Engines, worker: Worker) -> None:
        self.config = config
        self.engines = engines
        self.worker = worker
        self.live: set[Generation] = set()
        """Generations admitted and not yet over: the server stopping stops them."""

    def stop_generations(self) -> None:
        """Stop every reply between two steps (Ctrl+C): streams end with their finish and [DONE]
        at once, instead of being cut when the server's grace period runs out."""
        for generation in list(self.live):
            generation.cancelled.set()

    # --- routes ---------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(self.config.model_ids), "waiting": self.worker.waiting})

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"object": "list", "data": [self._model(model_id) for model_id in self.config.model_ids]})

    async def model(self, request: Request) -> Response:
        self._authorize(request)
        model_id = request.path_params["model_id"]
        self._check_model(model_id)
        return JSONResponse(self._model(model_id))

    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat_request)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, text_request)

    # --- a completion -----------------------------------------------------------------------

    async def _complete(self, http_request: Request, parse) -> Response:
        started = time.perf_counter()
        self._authorize(http_request)
        request: CompletionRequest = parse(await self._json(http_request), self.config.defaults)
        self._check_model(request.model)
        user = request.user or self.config.user or DEFAULT_USER
        # The store is read in a thread: a busy database must not stall every stream.
        engine_key = await asyncio.to_thread(self._check_user_and_documents, user, request.documents)
        generation = Generation(request, user, engine_key, asyncio.get_running_loop())
        job = self.worker.submit(lambda: generation.run(self.engines, self.config.database_path))
        self.live.add(generation)
        try:
            response = await self._respond(http_request, generation, started)
        except BaseException:  # the server stopping (uvicorn cancels the handler), or a bug
            generation.cancelled.set()
            raise
        finally:
            if generation.cancelled.is_set():
                job.cancel()  # not started yet: its place in the queue is free at once
                self.live.discard(generation)
        if not isinstance(response, StreamingResponse):  # over; a stream is over when it ends
            self.live.discard(generation)
        return response

    async def _respond(self, http_request: Request, generation: Generation, started: float) -> Response:
        request = generation.request
        try:
            first = await generation.next_watching(http_request)
        except ClientGone:
            log.info("%s %s: the client left before its reply began", http_request.method, http_request.url.path)
            return Response(status_code=499)
        if isinstance(first, ApiError):
            raise first
        shapes = Shapes(request)
        if request.stream:
            return StreamingResponse(
                self._stream(http_request, generation, shapes, first, started),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        item = first
        while not isinstance(item, Outcome):  # text pieces: the outcome holds the whole text
            if isinstance(item, ApiError):
                raise item
            try:
                item = await generation.next_watching(http_request)
            except ClientGone:
                log.info("%s %s: the client left; its reply stopped", http_request.method, http_request.url.path)
                return Response(status_code=499)
        self._log_done(http_request, item, started)
        return JSONResponse(shapes.completion(item))

    async def _stream(
        self, http_request: Request, generation: Generation, shapes: Shapes, first, started: float
    ) -> AsyncIterator[bytes]:
        """Server-sent events: the role, each piece of text, the finish with the numbers, the usage
        (when asked for), ``[DONE]``. A client that leaves cancels the generation (Starlette
        cancels this generator; ``finally`` tells the worker)."""
        finished = False
        try:
            yield event(shapes.chunk("" if shapes.request.kind == "chat" else None, first=True))
            item = first
            while True:
                if isinstance(item, Outcome):
                    yield event(shapes.chunk(outcome=item))
                    if shapes.request.include_usage:
                        yield event(shapes.usage_chunk(item))
                    yield DONE
                    finished = True
                    self._log_done(http_request, item, started)
                    return
                if isinstance(item, ApiError):  # after the stream began: as llama-server does, an error event
                    log.info("%s %s %d: %s", http_request.method, http_request.url.path, item.status, item.message)
                    yield event(item.body())
                    yield DONE
                    finished = True
                    return
                yield event(shapes.chunk(item))
                generation.sent()
                item = await generation.next()
        finally:
            self.live.discard(generation)
            if not finished:
                generation.cancelled.set()
                log.info("%s %s: the client left; its reply stopped", http_request.method, http_request.url.path)

    # --- checks -------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        key = self.config.api_key
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise ApiError(401, "invalid API key: send Authorization: Bearer KEY (duetto serve --api-key)",
                           code="invalid_api_key")  # fmt: skip

    async def _json(self, request: Request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(
                415, f"send the body as JSON with Content-Type: application/json, not {content_type or 'none'}"
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _too_large()
        body = bytearray()
        async for piece in request.stream():  # a chunked body declares no length: counted as it comes
            body += piece
            if len(body) > MAX_BODY_BYTES:
                raise _too_large()
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise invalid(f"the body is not valid JSON: {error}") from None

    def _check_model(self, model_id: str) -> None:
        if model_id not in self.config.model_ids:
            served = ", ".join(self.config.model_ids)
            raise ApiError(404, f"the model {model_id!r} is not served here; this server serves: {served}",
                           param="model", code="model_not_found")  # fmt: skip

    def _check_user_and_documents(self, user: str, documents: tuple[str, ...]) -> str | None:
        """The engine key for ``user``; 404 for a user that is not there, or a document that is
        not theirs (another user's is not found, as if it were not there)."""
        try:
            try:
                key = self.engines.key_for(user)
            except NotFound as error:
                raise ApiError(404, str(error), param="user", code="not_found") from None
            if documents:
                db = open_database(self.config.database_path)
                owner = named_user(db, user)
                for name in documents:
                    try:
                        get_document(db, name, owner)
                    except NotFound as error:
                        raise ApiError(404, str(error), param="duetto.documents", code="not_found") from None
        except StorageFailed as error:
            raise ApiError(507, str(error), code="insufficient_storage") from None
        except StoreError as error:
            raise invalid(str(error)) from None
        except sqlite3.OperationalError as error:  # locked by another duetto for longer than the busy timeout
            raise ApiError(503, f"the database is busy ({error}); retry shortly", retry_after=1) from None
        return key

    def _model(self, model_id: str) -> dict:
        return {"id": model_id, "object": "model", "created": self.config.created, "owned_by": "duetto"}

    def _log_done(self, request: Request, outcome: Outcome, started: float) -> None:
        stats = outcome.stats
        log.info(
            "%s %s 200: %d+%d tokens, %.1f tok/s, %s/%s, %d/%d drafted accepted, %.2f s",
            request.method, request.url.path, stats.prompt_tokens, stats.tokens, stats.tokens_per_second,
            stats.mode or "the server's", stats.drafter, stats.accepted, stats.drafted, time.perf_counter() - started,
        )  # fmt: skip
