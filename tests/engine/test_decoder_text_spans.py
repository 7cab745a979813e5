"""Written.pieces: the reply's text split by the source of the tokens that wrote it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ModelSession
from duetto.engine.stats import ReplyStats

PROMPT = "the cat sat on a mat and the cat sat on a mat and the cat"


@pytest.fixture(scope="module")
def decoder(tiny_models: dict[str, Path]) -> Decoder:
    return Decoder(
        ModelSession(tiny_models["target"], context_length=512, threads=1),
        ModelSession(tiny_models["draft"], context_length=512, threads=1),
    )


def deltas_and_spans(decoder: Decoder, token_sources: list[str] | None = None, **settings):
    """Each step's text, with its pieces as (source, text); the source of every token written
    goes to ``token_sources``."""
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": PROMPT}])
    deltas: list[str] = []
    spans_per_delta: list[list[tuple[str, str]]] = []
    token_sources = [] if token_sources is None else token_sources
    for item in decoder.generate(prompt, DecodeSettings(**settings)):
        if isinstance(item, ReplyStats):
            break
        if item.text:
            deltas.append(item.text)
            spans_per_delta.append([(piece.source, piece.text) for piece in item.pieces])
        token_sources.extend(item.sources)
    return deltas, spans_per_delta


DRAFT_ALONE = {"mode": "fast", "fallback_threshold": 0.0, "rollback_threshold": math.inf, "max_draft_run": 0}


@pytest.mark.parametrize(
    ("settings", "expected_sources"),
    [
        ({"mode": "target"}, {"target"}),
        (DRAFT_ALONE, {"model"}),
        ({"mode": "exact", "drafter": "lookup", "fixed_draft_length": 4}, None),
        ({"mode": "exact", "drafter": "model", "fixed_draft_length": 3}, None),
        ({"mode": "fast", "fallback_threshold": 0.2}, None),
    ],
)
def test_spans_arrive_with_each_delta_and_name_the_tokens_sources(
    decoder: Decoder, settings: dict, expected_sources: set[str] | None
) -> None:
    token_sources: list[str] = []
    deltas, spans_per_delta = deltas_and_spans(decoder, token_sources, max_tokens=40, **settings)
    assert deltas
    for delta, spans in zip(deltas, spans_per_delta, strict=True):
        assert "".join(text for _, text in spans) == delta
    sources = {source for spans in spans_per_delta for source, _ in spans}
    assert sources <= set(token_sources)
    assert sources == (expected_sources or sources)


def test_a_character_split_across_tokens_is_whole_in_one_span(decoder: Decoder, monkeypatch) -> None:
    euro = "€".encode()
    pieces = iter([euro[:1], euro[1:]] * 100)  # every character takes two tokens
    monkeypatch.setattr(decoder.target, "token_bytes", lambda token: next(pieces))
    # Model drafts commit several tokens a step without reading their bytes (lookup reads them).
    settings = {"mode": "exact", "drafter": "model", "fixed_draft_length": 3}
    deltas, spans_per_delta = deltas_and_spans(decoder, max_tokens=21, **settings)
    text = "".join(deltas)
    assert text == "€" * 10 + "\ufffd"  # the 21st token's half character is replaced at the end
    spans = [span for spans in spans_per_delta for span in spans]
    assert "".join(span_text for _, span_text in spans) == text
    assert all(span_text in ("€", "\ufffd") for _, span_text in spans)
