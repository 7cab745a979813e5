"""A long chat stays within its window, and folding edits the KV cache instead of re-reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetto.engine.conversation_window import ConversationWindow
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ChatMessage, ModelSession

SENTENCE = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire"
WORDS = SENTENCE.split(" ")


def first_words(text: str) -> str:
    """A stand-in for the small model's compression: shorter, deterministic."""
    return " ".join(text.split()[:12])


@pytest.fixture(scope="module")
def decoder(tiny_models: dict[str, Path]) -> Decoder:
    return Decoder(ModelSession(tiny_models["target"], context_length=2048, threads=1))


def test_a_hundred_turns_keep_the_prompt_and_the_cache_bounded(decoder: Decoder) -> None:
    session = decoder.target
    session.truncate(0)
    window = ConversationWindow(session, first_words, "You are terse.", window_tokens=400, memory_tokens=60)
    messages: list[ChatMessage] = []
    newly_read: list[int] = []
    folds = 0
    for turn in range(100):
        question = " ".join(WORDS[(turn + offset) % len(WORDS)] for offset in range(8 + turn % 5))
        messages.append({"role": "user", "content": question})
        prompt = window.prompt_tokens(messages, reply_budget=16)
        folds += window.last_fold is not None
        newly_read.append(len(prompt) - session.common_prefix_length(prompt))
        reply = decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=12)).text
        messages.append({"role": "assistant", "content": reply})

        assert len(prompt) + 16 <= 400 + 60
        assert len(session.tokens) <= 400 + 60 + 16
        assert window.memory_length <= 60

    assert folds >= 10
    assert max(newly_read[10:]) < 120, "a turn reads its own tokens and a short block, never the whole window"
    assert window.folded_messages > 150


def test_a_window_restored_from_its_memory_continues_the_same_prompt(decoder: Decoder) -> None:
    session = decoder.target
    session.truncate(0)
    window = ConversationWindow(session, first_words, "You are terse.", window_tokens=300, memory_tokens=80)
    messages: list[ChatMessage] = []
    for turn in range(30):
        messages.append({"role": "user", "content": " ".join(WORDS[turn % 7 : turn % 7 + 9])})
        prompt = window.prompt_tokens(messages, reply_budget=8)
        messages.append({"role": "assistant", "content": " ".join(WORDS[turn % 5 : turn % 5 + 6])})

    restored = ConversationWindow(
        session, first_words, "You are terse.", window_tokens=300, memory_tokens=80,
        memory_texts=list(window.memory_texts), folded_messages=window.folded_messages,
    )  # fmt: skip
    messages.pop()
    assert restored.prompt_tokens(messages, reply_budget=8) == prompt


def test_the_folded_span_is_found_where_the_folded_turns_begin() -> None:
    from duetto.engine.conversation_window import _folded_span

    system_end, turn_a, turn_b, cue = [1, 2], [10, 11, 12], [20, 21], [9]
    assert _folded_span(system_end + turn_a + turn_b + cue, system_end + turn_b + cue) == (2, 5)
    assert _folded_span(system_end + turn_a + turn_a + cue, system_end + turn_a + cue) == (2, 5)
    assert _folded_span([1, 2, 3], [7, 3]) is None
