"""A coding session in the chat app, on the real pair: the pasted module is still there, word for
word, three follow-ups later. Run with -s to see the per-turn table docs/BENCHMARKS.md reports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from coding_session import TURNS, markdown_table, run_coding_session
from terminal import Terminal

pytestmark = pytest.mark.real_models


def test_follow_ups_on_a_pasted_module_get_its_exact_text_right(real_models: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    environment = {"DUETTO_HOME": str(home), "DUETTO_MODELS": str(real_models), "TERM": "xterm-256color",
                   "PATH": os.environ["PATH"]}  # fmt: skip
    terminal = Terminal(str(Path(sys.executable).parent / "duetto"), environment)
    try:
        terminal.start()
        results = run_coding_session(terminal, home)
    finally:
        terminal.close()

    print("\n" + markdown_table(results))
    assert len(results) == len(TURNS)
    wrong = [(result.turn, result.reply) for result in results[1:] if not result.correct]
    assert not wrong, f"follow-ups that lost the module's exact text: {wrong}"
    assert results[-1].prompt_tokens > 800, "the module is still in the prompt"
