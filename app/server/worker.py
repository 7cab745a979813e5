"""One model, many clients: the engines requests run on, and the one thread that runs them.

llama.cpp's context is not safe to use from two threads, and two replies at once would each run
at half speed on a laptop's cores anyway; so requests run one at a time, in arrival order, on a
single worker thread. A bounded number may wait; past it a request is refused at once with a 503
and Retry-After (clients such as the ``openai`` package retry on it), so no request hangs in an
unbounded line. A request cancelled before its turn (its client left) is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from duetto.app.core.models import Engine, user_plugin_dir
from duetto.app.server.errors import ApiError
from duetto.engine.plugin_files import plugin_kind
from duetto.store.errors import NotFound, StoreError

log = logging.getLogger("duetto.serve")

T = TypeVar("T")
KEPT_ENGINES = 2
"""Engines kept loaded, the last used (each is a copy of the models); the shared one counts."""


def engine_key(user: str | None, database_path: Path | None = None) -> str | None:
    """Which engine serves ``user``: their own when they have a plugin, else the shared one (None).
    Raises NotFound for a user nobody added."""
    if user is None:
        return None
    return user if plugin_kind(user_plugin_dir(user, database_path)) else None


class Engines:
    """The shared engine, and per user with a plugin an engine whose target carries it.

    Users without a plugin share one engine; a user's own is loaded on their first request and
    kept while it is among the last used. Used from the worker thread only, so a model is never
    loaded or freed while another request decodes.
    """

    def __init__(
        self, load: Callable[[str | None], Engine], *, database_path: Path | None = None, per_user: bool = True
    ) -> None:
        self._load = load
        self.database_path = database_path
        self.per_user = per_user
        """False over a remote target: plugins stay here and do not apply to it, so all share one."""
        self._engines: OrderedDict[str | None, Engine] = OrderedDict()

    def key_for(self, user: str | None) -> str | None:
        key = engine_key(user, self.database_path)  # raises for a user nobody added, shared or not
        return key if self.per_user else None

    def add(self, key: str | None, engine: Engine) -> None:
        """An engine loaded beforehand (the one ``duetto serve`` starts with, under its spinner)."""
        self._engines[key] = engine

    def get(self, key: str | None) -> Engine:
        """The engine for ``key`` (``key_for``'s, worked out when the request came in: a plugin
        removed since then sends the request to the shared engine instead of loading a new copy)."""
        if key is not None and key not in self._engines:
            # if the look fails, loading theirs says what is wrong (a user removed meanwhile: not found)
            with contextlib.suppress(StoreError, sqlite3.Error, OSError):
                key = engine_key(key, self.database_path)
        self._close_unplugged(keep=key)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = self._load(key)
        self._engines.move_to_end(key)
        while len(self._engines) > KEPT_ENGINES:
            _, oldest = self._engines.popitem(last=False)
            oldest.close()
        return engine

    def _close_unplugged(self, keep: str | None) -> None:
        """Close the engines of users whose plugin (or who) was removed since theirs was loaded:
        their requests go to the shared engine now, and the copy of the models would otherwise
        hold its memory until newer engines pushed it out."""
        for key in [key for key in self._engines if key is not None and key != keep]:
            if self._plugin_gone(key):
                self._engines.pop(key).close()
                log.info("%s: no plugin any more; their engine is closed (the shared one serves them)", key)

    def _plugin_gone(self, user: str) -> bool:
        """Whether ``user`` has no plugin now (or was removed); False when that cannot be read
        (a busy database), so a request never fails over another user's tidying."""
        try:
            return engine_key(user, self.database_path) is None
        except NotFound:
            return True
        except (StoreError, sqlite3.Error, OSError):
            return False

    def close(self) -> None:
        while self._engines:
            self._engines.popitem()[1].close()


class Worker:
    """Runs submitted jobs one at a time on one thread; refuses jobs past ``max_waiting``."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duetto-model")
        self._lock = threading.Lock()
        self._admitted = 0
        self._seconds_per_job = 0.0
        self.served = 0

    @property
    def waiting(self) -> int:
        """Jobs admitted and not over: waiting, and the running one."""
        return self._admitted

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` in turn; its admission ends when it is over or cancelled before its turn
        (``Future.cancel``: its client left), so a client gone frees its place at once."""
        with self._lock:
            if self._admitted > self.max_waiting:
                retry = max(1, math.ceil(self._seconds_per_job * self._admitted))
                raise ApiError(
                    503,
                    f"the server is busy: {self._admitted} requests ahead of this one; retry in {retry} s",
                    code="server_busy",
                    retry_after=retry,
                )
            self._admitted += 1
        try:
            future = self._executor.submit(self._run, job)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def _run(self, job: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return job()
        finally:
            seconds = time.perf_counter() - started
            with self._lock:
                self.served += 1
                self._seconds_per_job += (seconds - self._seconds_per_job) * (0.2 if self.served > 1 else 1.0)

    def shutdown(self) -> None:
        """Stop taking jobs, drop the ones waiting, and wait for the running one (cancelled by
        its owner) to end."""
        self._executor.shutdown(wait=True, cancel_futures=True)
