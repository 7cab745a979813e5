"""The cost model on its own: what a draft of each length is expected to yield, from measurements."""

from __future__ import annotations

import pytest

from duetto.engine.cost_model import (
    PRIOR_RELATIVE_BATCH_COST,
    AcceptanceKey,
    CostModel,
    expected_tokens,
)

MODEL = AcceptanceKey("model")
LONG_QUOTE = AcceptanceKey("lookup", "tokens", 16, True)
GUESS = AcceptanceKey("lookup", "tokens", 1, False)


def test_a_step_yields_the_accepted_prefix_plus_the_targets_token() -> None:
    assert expected_tokens(0.0, 8) == 1.0
    assert expected_tokens(1.0, 8) == 9.0
    assert expected_tokens(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)


def test_verification_cost_is_the_prior_curve_until_measured_then_scaled_to_the_measurement() -> None:
    model = CostModel()
    assert model.verify_cost(8) == PRIOR_RELATIVE_BATCH_COST[8]
    assert model.verify_cost(3) == pytest.approx((1.7 + 2.9) / 2), "between prior points, linear"

    model.observe_verify(1, 0.030)
    assert model.verify_cost(1) == pytest.approx(0.030)
    assert model.verify_cost(8) == pytest.approx(0.030 * PRIOR_RELATIVE_BATCH_COST[8]), (
        "the prior's shape, this host's scale"
    )

    model.observe_verify(4, 0.050)
    model.observe_verify(8, 0.090)
    assert model.verify_cost(6) == pytest.approx(0.070), "between close measured sizes, linear"


def test_running_averages_follow_new_costs_without_forgetting_at_once() -> None:
    model = CostModel()
    for _ in range(50):
        model.observe_verify(1, 0.030)
    model.observe_verify(1, 0.300)  # one slow step (the machine was busy)
    assert 0.030 < model.verify_cost(1) < 0.1


def test_drafting_pays_only_when_acceptance_is_high_enough_for_the_hosts_batch_costs() -> None:
    cheap_batches = CostModel()
    for size in range(1, 65):
        cheap_batches.observe_verify(size, 0.030 + 0.004 * size)  # batching cheap, not free
    length, rate = cheap_batches.best_length(0.9, 32, draft_cost=0.0)
    assert length >= 4 and rate > 2 / cheap_batches.verify_cost(1)
    assert cheap_batches.best_length(0.05, 32, draft_cost=0.0)[0] == 0, "guesses that fail cost a wider batch"

    linear_batches = CostModel()
    for size in range(1, 65):
        linear_batches.observe_verify(size, 0.030 * size)  # every token costs a full step: drafting never pays
    assert linear_batches.best_length(0.9, 32, draft_cost=0.0)[0] == 0


def test_a_slow_drafter_must_be_accepted_more_often_to_be_worth_it() -> None:
    model = CostModel()
    for size in range(1, 65):
        model.observe_verify(size, 0.030 + 0.002 * size)
    free = model.best_length(0.7, 16, draft_cost=0.0)
    slow = model.best_length(0.7, 16, draft_cost=0.015)
    assert slow[1] < free[1] and slow[0] <= free[0]


def test_acceptance_counts_tokens_up_to_the_first_rejection_only() -> None:
    model = CostModel()
    model.observe_acceptance(MODEL, drafted=10, accepted=2)
    average = model.acceptance[MODEL]
    assert average.observations == 8 + 3, "the prior's 8, then two accepted and the one rejected"


def test_long_unique_matches_start_trusted_and_guesses_do_not() -> None:
    model = CostModel()
    assert model.acceptance_rate(LONG_QUOTE) > model.acceptance_rate(MODEL) > model.acceptance_rate(GUESS)


def test_the_optimism_for_untried_keys_fades_with_observations_and_never_reaches_one() -> None:
    model = CostModel()
    fresh = model.acceptance_rate(MODEL)
    for _ in range(200):
        model.observe_acceptance(MODEL, drafted=1, accepted=1)
    assert model.acceptance_rate(MODEL) <= 0.99
    for _ in range(400):
        model.observe_acceptance(MODEL, drafted=1, accepted=0)
    assert model.acceptance_rate(MODEL) < fresh


def test_an_unused_key_drifts_back_toward_its_prior() -> None:
    model = CostModel()
    for _ in range(100):
        model.observe_acceptance(LONG_QUOTE, drafted=1, accepted=0)
    low = model.acceptance[LONG_QUOTE].value
    for _ in range(100):
        model.relax(LONG_QUOTE)
    assert low < model.acceptance[LONG_QUOTE].value < 0.97
    model.relax(GUESS)  # never observed: nothing to relax
    assert GUESS not in model.acceptance


def test_extending_a_draft_stops_paying_as_the_chance_of_full_acceptance_falls() -> None:
    model = CostModel()
    for size in range(1, 65):
        model.observe_verify(size, 0.030 + 0.002 * size)
    model.observe_draft("model", 4, 0.040)
    assert model.worth_extending(0.95, "model", 3)
    assert not model.worth_extending(0.2, "model", 3)
