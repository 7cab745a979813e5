"""Sampling on its own: the distributions it draws from, and speculative sampling's exactness."""

from __future__ import annotations

import numpy as np
import pytest

from duetto.engine.sampling import (
    SamplingSettings,
    accept_or_replace,
    choose,
    distribution,
    softmax,
    top_two_gap,
)

LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=np.float32)


def test_greedy_takes_the_argmax_and_reports_how_close_the_runner_up_was() -> None:
    rng = np.random.default_rng(0)
    assert choose(LOGITS, SamplingSettings(temperature=0.0), rng) == 0
    assert top_two_gap(LOGITS) == pytest.approx(1.0)
    assert softmax(LOGITS).sum() == pytest.approx(1.0)


def test_top_k_and_top_p_keep_the_likeliest_tokens_in_order() -> None:
    tokens, probabilities = distribution(LOGITS, SamplingSettings(temperature=1.0, top_k=4, top_p=1.0))
    assert list(tokens) == [0, 1, 2, 3]
    assert probabilities.sum() == pytest.approx(1.0) and list(probabilities) == sorted(probabilities, reverse=True)

    tokens, probabilities = distribution(LOGITS, SamplingSettings(temperature=1.0, top_k=40, top_p=0.7))
    full = softmax(LOGITS)
    assert full[0] < 0.7 <= full[0] + full[1] and list(tokens) == [0, 1], "the smallest set reaching top_p"
    assert probabilities.sum() == pytest.approx(1.0)


def test_a_low_temperature_sharpens_and_a_high_one_flattens() -> None:
    cold = distribution(LOGITS, SamplingSettings(temperature=0.2, top_k=40, top_p=1.0))[1]
    hot = distribution(LOGITS, SamplingSettings(temperature=5.0, top_k=40, top_p=1.0))[1]
    assert cold[0] > softmax(LOGITS)[0] > hot[0]


@pytest.mark.parametrize("draft_kind", ["deterministic", "sampled"])
def test_speculative_sampling_emits_tokens_distributed_as_the_target(draft_kind: str) -> None:
    """Whatever the draft proposes, accepted-or-replaced tokens follow the target's distribution
    (Leviathan et al. 2023): measured over 40,000 draws with a fixed seed."""
    rng = np.random.default_rng(7)
    target = distribution(LOGITS, SamplingSettings(temperature=1.0, top_k=40, top_p=1.0))
    draft_logits = np.array([-1.0, 0.0, 2.0, 1.0, 0.5, 0.0], dtype=np.float32)  # a draft that disagrees
    draft = distribution(draft_logits, SamplingSettings(temperature=1.0, top_k=40, top_p=1.0))
    counts = np.zeros(LOGITS.size)
    draws = 40_000
    for _ in range(draws):
        if draft_kind == "deterministic":
            proposed, proposal = 2, None  # lookup: always the same token, q = one-hot
        else:
            proposed, proposal = int(rng.choice(draft[0], p=draft[1])), draft
        _, emitted = accept_or_replace(proposed, target, proposal, rng)
        counts[emitted] += 1
    expected = np.zeros(LOGITS.size)
    expected[target[0]] = target[1]
    np.testing.assert_allclose(counts / draws, expected, atol=0.01)


def test_a_draft_token_the_target_would_never_pick_is_always_replaced() -> None:
    rng = np.random.default_rng(1)
    target = distribution(LOGITS, SamplingSettings(temperature=1.0, top_k=2, top_p=1.0))  # tokens 0 and 1 only
    for _ in range(200):
        accepted, emitted = accept_or_replace(5, target, None, rng)
        assert not accepted and emitted in (0, 1)
