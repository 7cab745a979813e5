"""How long-running engine work reports progress without knowing who is watching.

The CLI renders it with rich progress bars, the TUI with its own widgets, tests
record it; the engine only calls these methods.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, label: str, total: int, completed: int = 0) -> None:
        """A new task of ``total`` units starts, ``completed`` of them already done."""

    def advance(self, amount: int) -> None:
        """``amount`` more units of the current task are done."""

    def end(self) -> None:
        """The current task finished."""

    def say(self, message: str) -> None:
        """A line worth showing the user (a source skipped, a resume)."""


class SilentProgress:
    """Reports nothing: for callers with no one to show progress to."""

    def begin(self, label: str, total: int, completed: int = 0) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def end(self) -> None:
        pass

    def say(self, message: str) -> None:
        pass
