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


def last_logits(session: ModelSession, tokens: list[int]) -> np.ndarray:
    session.truncate(0)
    return session.evaluate(tokens, [len(tokens) - 1]).copy()[0]


def test_an_inserted_span_is_evaluated_as_if_it_followed_the_tokens_before_it(session: ModelSession) -> None:
    words = session.tokenize("the cat sat on a mat and then it ran to the door while a dog slept")
    inserted = session.tokenize(" near the warm fire")
    probe = session.tokenize(" and then")
    at = 5

    session.truncate(0)
    session.evaluate(words, [])
    session.insert_tokens(inserted, at=at)
    assert session.tokens == words[:at] + inserted + words[at:]
    session.remove_span(at + len(inserted), len(session.tokens))
    edited = session.evaluate(probe, [len(probe) - 1]).copy()[0]

    np.testing.assert_allclose(edited, last_logits(session, words[:at] + inserted + probe), atol=1e-3)


def test_removing_a_middle_span_closes_the_gap(session: ModelSession) -> None:
    words = session.tokenize("the cat sat on a mat and then it ran to the door while a dog slept")
    session.truncate(0)
    session.evaluate(words, [])

    session.remove_span(3, 6)

    assert session.tokens == words[:3] + words[6:]
    assert session.last_cached_position() == len(session.tokens) - 1
    assert session.last_cached_position(sequence=1) == -1
    session.evaluate(session.tokenize(" and"), [0])  # positions continue where the shifted tail ends


def test_inserting_at_the_end_equals_evaluating(session: ModelSession) -> None:
    words = session.tokenize("the cat sat on a mat")
    more = session.tokenize(" and then it ran")
    probe = session.tokenize(" to the door")

    session.truncate(0)
    session.evaluate(words, [])
    session.insert_tokens(more, at=len(words))
    inserted = session.evaluate(probe, [len(probe) - 1]).copy()[0]

    np.testing.assert_allclose(inserted, last_logits(session, words + more + probe), atol=1e-3)


def test_hidden_states_read_without_the_output_projection_match_and_leave_the_cache_alone(
    session: ModelSession,
) -> None:
    tokens = session.tokenize("a dog slept near the warm fire " * 100)[:600]  # two batches
    session.truncate(0)
    _, expected = session.evaluate_with_hidden_states(tokens, range(len(tokens)))
    before = session.evaluate([tokens[0]], [0]).copy()

    hidden = session.read_hidden_states(tokens)

    np.testing.assert_allclose(hidden, expected, rtol=1e-4, atol=1e-4)
    assert session.tokens == [*tokens, tokens[0]]
    session.truncate(len(tokens))
    np.testing.assert_allclose(session.evaluate([tokens[0]], [0]), before, rtol=1e-5, atol=1e-5)


def test_token_surprisal_from_hidden_states_equals_the_models_own(session: ModelSession) -> None:
    from duetto.engine.token_surprisal import TokenSurprisal

    tokens = session.tokenize("the cat sat on a mat and then it ran to the door")
    session.truncate(0)
    logits, hidden = session.evaluate_with_hidden_states(tokens, range(len(tokens)))
    predicting, following = logits[:-1].astype(np.float64), tokens[1:]
    peak = predicting.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(predicting - peak).sum(axis=1)) + peak[:, 0]
    expected = log_normaliser - predicting[np.arange(len(following)), following]

    # The tiny vocabulary is smaller than the common rows, so the normaliser is exact here.
    surprisals = TokenSurprisal(session.path).surprisals(hidden[:-1], following)

    np.testing.assert_allclose(surprisals, expected, rtol=1e-3, atol=2e-3)


def test_surprisal_over_part_of_the_vocabulary_normalises_over_that_part_and_the_tokens_scored(
    session: ModelSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duetto.engine import token_surprisal

    monkeypatch.setattr(token_surprisal, "COMMON_ROWS", 40)
    tokens = session.tokenize("the cat sat on a mat and then it ran to the door")
    session.truncate(0)
    logits, hidden = session.evaluate_with_hidden_states(tokens, range(len(tokens)))
    predicting, following = logits[:-1].astype(np.float64), tokens[1:]
    part = np.union1d(np.arange(40), following)
    peak = predicting[:, part].max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(predicting[:, part] - peak).sum(axis=1)) + peak[:, 0]
    expected = log_normaliser - predicting[np.arange(len(following)), following]

    surprisals = token_surprisal.TokenSurprisal(session.path).surprisals(hidden[:-1], following)

    assert max(following) >= 40, "some scored tokens lie outside the common rows"
    np.testing.assert_allclose(surprisals, expected, rtol=1e-3, atol=2e-3)


def test_the_automatic_context_is_the_trained_length_as_far_as_memory_affords() -> None:
    from duetto.engine.model_session import affordable_context_length

    gib = 2**30
    per_token = 28_672  # the default 1.5B target: 28 layers x 2 KV heads x 128 x 2 (K and V) x 2 bytes
    assert affordable_context_length(32_768, per_token, memory_bytes=24 * gib) == 32_768
    assert affordable_context_length(32_768, per_token, memory_bytes=4 * gib) == 18_432
    assert affordable_context_length(32_768, per_token, memory_bytes=1 * gib) == 4_096
    assert affordable_context_length(512, per_token, memory_bytes=24 * gib) == 4_096


def test_a_session_without_a_context_length_chooses_one(tiny_models) -> None:
    session = ModelSession(tiny_models["target"], threads=1)
    try:
        assert session.context_length == 4_096
    finally:
        session.close()


def test_loading_a_model_never_redirects_the_terminal(tiny_models, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat app draws on file descriptor 2 from its own thread while a worker loads a model."""
    import os

    redirected: list[int] = []
    real_dup2 = os.dup2

    def watching_dup2(source: int, target: int, *arguments, **options):
        if target in (1, 2):
            redirected.append(target)
        return real_dup2(source, target, *arguments, **options)

    monkeypatch.setattr(os, "dup2", watching_dup2)
    session = ModelSession(tiny_models["draft"], context_length=256, threads=1)
    session.close()

    assert redirected == []
