"""The installed duetto in a real terminal (tmux), with the real default pair, as a person uses it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from terminal import Terminal

pytestmark = pytest.mark.real_models

QUESTION = "What is 2 + 3? Reply with a full sentence."


def duetto_command() -> str:
    installed = Path(sys.executable).parent / "duetto"
    assert installed.exists(), f"duetto is not installed next to {sys.executable}"
    return str(installed)


def test_ask_see_the_streamed_answer_quit_and_find_the_chat_again(real_models: Path, tmp_path: Path) -> None:
    environment = {
        "DUETTO_HOME": str(tmp_path / "home"),
        "DUETTO_MODELS": str(real_models),
        "TERM": "xterm-256color",
        "PATH": os.environ["PATH"],
    }
    terminal = Terminal(duetto_command(), environment)
    try:
        terminal.start()
        terminal.wait_for(r"qwen2\.5-coder-1\.5b.*mode exact")  # the models are loaded
        terminal.keys(QUESTION, "Enter")
        screen = terminal.wait_for(r"\d+\.\d tok/s")
        terminal.wait_for(r"█ .*\b5\b")  # the reply block: its border, then the answer
        assert QUESTION[:20] in screen
        terminal.keys("C-t")  # mode fast, saved for this user
        terminal.wait_for(r"mode fast")
        terminal.keys("C-q")
        assert terminal.wait_until_exited(), "Ctrl+Q quits"
        assert "Traceback" not in terminal.screen()

        terminal.close()
        terminal.start()
        terminal.wait_for(r"mode fast")  # the setting came back with the user
        # in the chat list (the chat's own first message shows first, then the list fills)
        terminal.wait_for(
            r"What is 2 \+ 3\?", within=lambda screen: "\n".join(line[:32] for line in screen.splitlines())
        )
    finally:
        terminal.close()
