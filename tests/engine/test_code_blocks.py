"""Code in a chat is told from prose, kept verbatim, and shortened only to whole-line outlines."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetto.engine.code_blocks import outline, remembered_turns, shrunk_memory, split_code, without_oldest_part
from duetto.engine.conversation_window import ConversationWindow
from duetto.engine.model_session import ModelSession

MODULE = '''"""Retry a flaky call with backoff."""

import random
import time

DEFAULT_TIMEOUT = "45s"
MAX_ATTEMPTS = 5


def parse_timeout(text):
    """Seconds in '45s' or '2m'."""
    number, unit = int(text[:-1]), text[-1]
    return number * (60 if unit == "m" else 1)


class Retrier:
    """Calls a function until it succeeds."""

    def __init__(self, attempts=MAX_ATTEMPTS, timeout=DEFAULT_TIMEOUT):
        self.attempts = attempts
        self.timeout = parse_timeout(timeout)

    def call(self, function, *arguments):
        for attempt in range(self.attempts):
            try:
                return function(*arguments)
            except OSError:
                time.sleep(random.uniform(0, 2**attempt))
        raise TimeoutError(f"gave up after {self.attempts} attempts")
'''
REQUEST = "Add type hints to this module and keep everything else as it is:\n\n"


def test_a_pasted_module_is_one_code_segment_between_prose() -> None:
    text = REQUEST + MODULE + "\nThanks!"
    segments = split_code(text)

    assert "".join(segment.text for segment in segments) == text
    code = [segment.text for segment in segments if segment.is_code]
    assert len(code) == 1 and MODULE.strip() in code[0] + '"""'
    assert not segments[0].is_code and not segments[-1].is_code


def test_fenced_code_and_plain_questions() -> None:
    fenced = "Why does this fail?\n```python\nx = 1 +\n```\nIt says SyntaxError."
    assert [segment.is_code for segment in split_code(fenced)] == [False, True, False]
    assert all(not segment.is_code for segment in split_code("What does the GIL do? Explain it.\nBriefly."))


def test_an_outline_is_whole_lines_of_the_code_with_its_head_and_signatures() -> None:
    shortened = outline(MODULE)
    source_lines = set(MODULE.splitlines())

    assert len(shortened) < len(MODULE) / 2
    for line in shortened.splitlines():
        assert line in source_lines or line.strip() == "...", line
    for kept in ("import random", 'DEFAULT_TIMEOUT = "45s"', "def parse_timeout(text):", "class Retrier:",
                 "    def call(self, function, *arguments):", '    """Seconds in \'45s\' or \'2m\'."""'):  # fmt: skip
        assert kept in shortened.splitlines()


def test_remembered_turns_compress_prose_and_keep_code_verbatim() -> None:
    long_prose = "word " * 60
    messages = [
        {"role": "user", "content": REQUEST + MODULE},
        {"role": "assistant", "content": long_prose + "\n```python\nx: int = 1\n```"},
    ]

    memory = remembered_turns(messages, lambda text: "SHORT")

    assert MODULE.strip().split("\n", 1)[1] in memory, "the module, verbatim"
    assert REQUEST.strip() in memory, "a short instruction is kept as asked"
    assert "SHORT" in memory and "word word" not in memory
    assert "x: int = 1" in memory


def test_memory_shrinks_code_to_its_outline_then_drops_whole_parts() -> None:
    memory = remembered_turns([{"role": "user", "content": REQUEST + MODULE}], lambda text: text)

    smaller = shrunk_memory(memory, lambda text: text)
    assert smaller is not None and len(smaller) < len(memory)
    assert 'DEFAULT_TIMEOUT = "45s"' in smaller and "time.sleep" not in smaller
    assert shrunk_memory(smaller, lambda text: text) is None, "an outline cannot shrink further"
    rest = without_oldest_part(smaller)
    assert rest != smaller and 'DEFAULT_TIMEOUT = "45s"' in rest, "the prose line goes first, the code block whole"


@pytest.fixture(scope="module")
def session(tiny_models: dict[str, Path]) -> ModelSession:
    return ModelSession(tiny_models["target"], context_length=4096, threads=1)


def folded_coding_session(session: ModelSession, memory_tokens: int) -> ConversationWindow:
    """A window that has just folded a pasted module and the reply to it (a long follow-up came)."""
    session.truncate(0)
    window = ConversationWindow(session, lambda text: "compressed", "You help with code.", window_tokens=1000,
                                memory_tokens=memory_tokens)  # fmt: skip
    messages = [
        {"role": "user", "content": REQUEST + MODULE},
        {"role": "assistant", "content": "OK. " * 40},
        {"role": "user", "content": "And what is the default timeout? " * 20},
    ]
    window.prompt_tokens(messages, reply_budget=64)
    return window


def test_a_folded_coding_turn_keeps_its_code_verbatim(session: ModelSession) -> None:
    window = folded_coding_session(session, memory_tokens=1200)

    assert window.folded_messages == 2
    assert MODULE.strip().split("\n", 1)[1] in window.memory_texts[0]


def test_a_small_memory_keeps_the_head_of_the_file_as_an_outline(session: ModelSession) -> None:
    window = folded_coding_session(session, memory_tokens=320)

    assert window.memory_length <= 320
    remembered = "\n".join(window.memory_texts)
    assert 'DEFAULT_TIMEOUT = "45s"' in remembered and "import random" in remembered
    source_lines = set(MODULE.splitlines())
    for line in remembered.splitlines():
        if line.startswith(("    ", "import", "DEFAULT", "MAX", "def", "class")):
            assert line in source_lines or line.strip() == "...", f"a code line was changed: {line!r}"


def test_fenced_code_is_the_blocks_contents_without_their_fences() -> None:
    from duetto.engine.code_blocks import fenced_code

    reply = "Here it is:\n\n```python\ndef f():\n    return 1\n```\n\nand a shell line:\n\n  ~~~\n  ls -l\n  ~~~\n"

    assert fenced_code(reply) == ["def f():\n    return 1", "ls -l"]
    assert fenced_code("no code here") == []
    cut = 'Here is a loop:\n```bash\nfor f in *.txt; do\n  echo "$f"'  # cut at the token limit
    assert fenced_code(cut) == [] and fenced_code(cut, unclosed=True) == ['for f in *.txt; do\n  echo "$f"']
    assert fenced_code(reply, unclosed=True) == fenced_code(reply), "closed blocks only: nothing more"
