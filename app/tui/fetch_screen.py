"""First run: fetch the missing models with progress bars, inside the app.

The engine's fetch reports through the Progress protocol; ``ScreenProgress`` turns
those calls (made on the fetch worker's thread) into messages for this screen, and
stops the fetch when the user cancels by raising from ``advance``. What was fetched
so far stays in the models directory's partial area, so the next start resumes.
"""

from __future__ import annotations

import threading
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Label, ProgressBar, Static

from duetto.engine.errors import EngineError
from duetto.engine.fetch import fetch_model
from duetto.engine.manifest import ModelSpec
from duetto.store import locations

REPORT_EVERY_SECONDS = 0.2


class FetchCancelled(EngineError):
    """The user stopped the fetch."""


class FetchProgressed(Message):
    def __init__(self, label: str, total: int, completed: int) -> None:
        super().__init__()
        self.label, self.total, self.completed = label, total, completed


class FetchSaid(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class FetchEnded(Message):
    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error


class ScreenProgress:
    """The engine's Progress protocol, forwarded to a screen as messages (thread-safe)."""

    def __init__(self, screen: FetchScreen, cancelled: threading.Event) -> None:
        self.screen = screen
        self.cancelled = cancelled
        self.label, self.total, self.completed = "", 0, 0
        self._last_report = 0.0

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= REPORT_EVERY_SECONDS:
            self._last_report = now
            self.screen.post_message(FetchProgressed(self.label, self.total, self.completed))

    def begin(self, label: str, total: int, completed: int = 0) -> None:
        self.label, self.total, self.completed = label, total, completed
        self._report(force=True)

    def advance(self, amount: int) -> None:
        if self.cancelled.is_set():
            raise FetchCancelled("fetch cancelled; start duetto again to resume where it stopped")
        self.completed += amount
        self._report()

    def end(self) -> None:
        self.completed = self.total
        self._report(force=True)

    def say(self, message: str) -> None:
        self.screen.post_message(FetchSaid(message))


class FetchScreen(Screen[bool]):
    """Dismissed with True when every model is in place, False when cancelled or failed."""

    DEFAULT_CSS = """
    FetchScreen { align: center middle; }
    FetchScreen > Vertical { width: 90; height: auto; border: thick $accent; padding: 1 2; }
    FetchScreen ProgressBar { margin: 1 0; }
    FetchScreen #fetch-log { color: $text-muted; height: auto; }
    FetchScreen #fetch-error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel_fetch")]

    def __init__(self, specs: list[ModelSpec]) -> None:
        super().__init__()
        self.specs = specs
        self.cancelled = threading.Event()
        self.failed = False

    def compose(self) -> ComposeResult:
        total = sum(spec.size for spec in self.specs) / 1e9
        with Vertical():
            yield Label(
                f"[b]First run[/b]: fetching {', '.join(spec.name for spec in self.specs)} "
                f"({total:.1f} GB) into {locations.models_dir()}; every file is checked by sha256."
            )
            yield Label("", id="fetch-file")
            yield ProgressBar(id="fetch-bar", show_eta=True)
            yield Static("", id="fetch-log")
            yield Static("", id="fetch-error")
            yield Button("Cancel (Esc)", id="fetch-cancel")

    def on_mount(self) -> None:
        self.fetch_all()

    @work(thread=True, exclusive=True, group="fetch")
    def fetch_all(self) -> None:
        progress = ScreenProgress(self, self.cancelled)
        try:
            for spec in self.specs:
                fetch_model(spec, locations.models_dir(), progress)
        except EngineError as error:
            self.post_message(FetchEnded(str(error)))
            return
        self.post_message(FetchEnded(None))

    def on_fetch_progressed(self, message: FetchProgressed) -> None:
        self.query_one("#fetch-file", Label).update(message.label)
        self.query_one("#fetch-bar", ProgressBar).update(total=message.total, progress=message.completed)

    def on_fetch_said(self, message: FetchSaid) -> None:
        self.query_one("#fetch-log", Static).update(message.text)

    def on_fetch_ended(self, message: FetchEnded) -> None:
        if message.error is None:
            self.dismiss(True)
            return
        self.failed = True
        self.query_one("#fetch-error", Static).update(
            f"{message.error}\n\nOffline? Fetch on a connected machine with `duetto models fetch`, or copy the "
            f".gguf files into {locations.models_dir()}. Press Esc to close."
        )
        self.query_one("#fetch-cancel", Button).label = "Close (Esc)"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        if self.failed:
            self.dismiss(False)
            return
        self.cancelled.set()
