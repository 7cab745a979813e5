"""ModelSession paths that the decoder tests do not reach: hidden states next to logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from duetto.engine.model_session import ModelSession


@pytest.fixture(scope="module")
def session(tiny_models: dict[str, Path]) -> ModelSession:
    return ModelSession(tiny_models["draft"], context_length=1024, threads=1)


def test_hidden_states_come_with_the_same_logits_as_the_plain_path(session: ModelSession) -> None:
    tokens = session.tokenize("the cat sat on a mat and then it ran to the door " * 3)
    rows = [0, 5, len(tokens) - 1]

    session.truncate(0)
    logits, hidden = session.evaluate_with_hidden_states(tokens, rows)
    session.truncate(0)
    plain = session.evaluate(tokens, rows).copy()

    assert hidden.shape == (3, session.hidden_size) and logits.shape == (3, session.vocabulary_size)
    np.testing.assert_allclose(logits, plain, rtol=1e-4, atol=1e-4)
    assert not np.allclose(hidden[0], hidden[1])
    assert session.tokens == tokens


def test_hidden_states_span_several_batches(session: ModelSession) -> None:
    tokens = session.tokenize("a dog slept near the warm fire " * 100)[:700]
    session.truncate(0)
    logits, hidden = session.evaluate_with_hidden_states(tokens, range(len(tokens)))
    session.truncate(0)
    plain = session.evaluate(tokens, [699]).copy()

    assert hidden.shape[0] == 700
    np.testing.assert_allclose(logits[699], plain[0], rtol=1e-4, atol=1e-4)
