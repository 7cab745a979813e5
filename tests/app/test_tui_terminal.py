"""The installed duetto in a real terminal (tmux), with the real default pair, as a person uses it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_models

QUESTION = "What is 2 + 3? Answer with the number only."


def duetto_command() -> str:
    installed = Path(sys.executable).parent / "duetto"
    assert installed.exists(), f"duetto is not installed next to {sys.executable}"
    return str(installed)


class Terminal:
    def __init__(self, environment: dict[str, str]) -> None:
        assert shutil.which("tmux"), "tmux is needed for this test (.ci/run installs it)"
        self.name = f"duetto-test-{uuid.uuid4().hex[:8]}"
        self.environment = environment

    def start(self) -> None:
        exports = " ".join(f"{key}={value}" for key, value in self.environment.items())
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                "120",
                "-y",
                "30",
                f"env {exports} {duetto_command()}",
            ],
            check=True,
        )

    def screen(self) -> str:
        result = subprocess.run(["tmux", "capture-pane", "-t", self.name, "-p"], capture_output=True, text=True)
        return result.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, pattern: str, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"never saw {pattern!r}; the screen was:\n{self.screen()}")

    def running(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0

    def close(self) -> None:
        if self.running():
            subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def test_ask_see_the_streamed_answer_quit_and_find_the_chat_again(real_models: Path, tmp_path: Path) -> None:
    environment = {
        "DUETTO_HOME": str(tmp_path / "home"),
        "DUETTO_MODELS": str(real_models),
        "TERM": "xterm-256color",
        "PATH": os.environ["PATH"],
    }
    terminal = Terminal(environment)
    try:
        terminal.start()
        terminal.wait_for(r"qwen2\.5-coder-1\.5b.*mode exact")  # the models are loaded
        terminal.keys(QUESTION, "Enter")
        screen = terminal.wait_for(r"\d+\.\d tok/s")
        terminal.wait_for(r"█ 5\b")  # the reply block: its border, then the answer
        assert QUESTION[:20] in screen
        terminal.keys("C-t")  # mode fast, saved for this profile
        terminal.wait_for(r"mode fast")
        terminal.keys("C-q")
        deadline = time.monotonic() + 20
        while terminal.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not terminal.running(), "Ctrl+Q quits"

        terminal.start()
        screen = terminal.wait_for(r"What is 2 \+ 3\?")
        terminal.wait_for(r"mode fast")  # the setting came back with the profile
        sidebar = "\n".join(line[:32] for line in screen.splitlines())
        assert "What is 2 + 3?" in sidebar, screen
    finally:
        terminal.close()
