"""Terminal output for the CLI: progress bars and messages on stderr, data on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

stderr_console = Console(stderr=True, highlight=False, soft_wrap=True)
stdout_console = Console(highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else there."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class RichByteProgress:
    """The engine's Progress protocol drawn as rich download bars (size, speed, time left)."""

    def __init__(self) -> None:
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr_console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._total = 0

    def __enter__(self) -> RichByteProgress:
        if stderr_console.is_terminal:  # in a log, bars are blank lines: only what say() prints
            self._bars.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if stderr_console.is_terminal:
            self._bars.stop()

    def begin(self, label: str, total: int, completed: int = 0) -> None:
        self._task = self._bars.add_task(label, total=total, completed=completed)
        self._total = total

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, amount)

    def end(self) -> None:
        if self._task is not None:
            self._bars.update(self._task, completed=self._total)
        self._task = None

    def say(self, message: str) -> None:
        self._bars.console.print(message)
