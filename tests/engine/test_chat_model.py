"""The target-only chat path on the tiny generated models."""

from pathlib import Path

import pytest

from duetto.engine.chat_model import ChatModel, ContextFull, GenerationSettings
from duetto.engine.stats import ReplyStats


@pytest.fixture(scope="module")
def target(tiny_models: dict[str, Path]) -> ChatModel:
    return ChatModel(tiny_models["target"], context_length=256, threads=1)


def run(model: ChatModel, prompt: str, settings: GenerationSettings) -> tuple[str, ReplyStats]:
    tokens = model.chat_prompt_tokens([{"role": "user", "content": prompt}])
    items = list(model.stream(tokens, settings))
    assert isinstance(items[-1], ReplyStats)
    assert all(isinstance(item, str) for item in items[:-1])
    return "".join(items[:-1]), items[-1]


def test_greedy_replies_are_repeatable_and_depend_on_the_prompt(target: ChatModel) -> None:
    settings = GenerationSettings(max_tokens=12)
    first, stats = run(target, "hello world", settings)
    again, _ = run(target, "hello world", settings)
    other, _ = run(target, "the cat sat on the mat", settings)

    assert first == again
    assert first != other
    assert stats.tokens == 12 and stats.finish_reason == "length"
    assert stats.mode == "target" and stats.target_calls == 12 and stats.drafted == 0
    assert stats.prompt_tokens > 0 and stats.ttft_seconds > 0


def test_the_chat_template_comes_from_the_model(target: ChatModel) -> None:
    tokens = target.chat_prompt_tokens([{"role": "user", "content": "hi"}])
    text = target.llm.detokenize(tokens, special=True).decode()

    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_stop_strings_and_cancellation_end_a_reply_early(target: ChatModel) -> None:
    full, _ = run(target, "hello world", GenerationSettings(max_tokens=12))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    stopped, stats = run(target, "hello world", GenerationSettings(max_tokens=12, stop=(stop,)))

    assert stopped == full[: full.index(stop)]
    assert stats.finish_reason == "stop"

    tokens = target.chat_prompt_tokens([{"role": "user", "content": "hello world"}])
    calls = []
    items = list(
        target.stream(tokens, GenerationSettings(max_tokens=12), should_cancel=lambda: calls.append(1) or True)
    )
    assert items[-1].finish_reason == "cancelled" and items[-1].tokens == 1


def test_a_prompt_longer_than_the_context_is_a_clear_error(target: ChatModel) -> None:
    tokens = target.chat_prompt_tokens([{"role": "user", "content": "word " * 400}])

    with pytest.raises(ContextFull, match="context holds 256"):
        list(target.stream(tokens, GenerationSettings(max_tokens=4)))
