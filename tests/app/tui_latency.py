"""Measure how fast the chat app shows a key press while a reply streams, with the real default pair.

Not a test (no timing assertion belongs in the suite); run by hand, numbers in docs/BENCHMARKS.md:

    DUETTO_MODELS=~/.cache/duetto-tests/models python3 tests/app/tui_latency.py

It starts the installed ``duetto`` in tmux (120x30, a fresh DUETTO_HOME), asks for a reply long
enough to hold code blocks, and once the reply is being written types one letter every 0.3 s; a
key's latency runs from ``tmux send-keys`` to the letter appearing on the captured screen, so it
includes tmux and the polling (about 10 ms), as a person would see it. The measurement has to come
from outside the process: a stalled event loop would also stall an in-process probe.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "Write a Python function that parses an ISO date, with a docstring and tests."
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"


class Tmux:
    def __init__(self, command: str) -> None:
        self.name = f"duetto-latency-{os.getpid()}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "120", "-y", "30", command], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-t", self.name, "-p"], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            if time.monotonic() > deadline:
                raise SystemExit(f"never saw {text!r}:\n{self.screen()}")
            time.sleep(0.002)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def type_and_time(terminal: Tmux, letters: str, while_writing: bool) -> list[float]:
    """Type ``letters`` one by one, 0.3 s apart; each one's time from send-keys to the screen."""
    latencies: list[float] = []
    typed = ""
    for letter in letters:
        if while_writing and "writing…" not in terminal.screen():
            break
        typed += letter
        started = time.monotonic()
        terminal.keys(letter)
        terminal.wait_for(typed, timeout=30)
        latencies.append(time.monotonic() - started)
        time.sleep(0.3)
    return latencies


def summary(latencies: list[float]) -> str:
    return (f"{len(latencies)} key presses, median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    duetto = shutil.which("duetto") or str(Path(sys.executable).parent / "duetto")
    home = tempfile.mkdtemp()
    terminal = Tmux(f"env DUETTO_HOME={home} DUETTO_MODELS={os.environ['DUETTO_MODELS']} TERM=xterm-256color "
                    f"{duetto} chat --max-tokens 300")  # fmt: skip
    try:
        terminal.wait_for("mode exact", timeout=300)
        terminal.wait_for("qwen2.5-coder-1.5b", timeout=300)  # the models are loaded
        idle = type_and_time(terminal, "zyxwvutsrq", while_writing=False)
        terminal.keys(*["BSpace"] * 10)
        terminal.keys(PROMPT, "Enter")
        terminal.wait_for("writing…", timeout=60)
        writing = type_and_time(terminal, LETTERS, while_writing=True)
        print("while writing, each (ms):", [round(latency * 1000) for latency in writing])
        print("idle:", summary(idle))
        print("while a reply is written:", summary(writing))
    finally:
        terminal.close()


if __name__ == "__main__":
    main()
