"""Draft-verify decoding on the tiny generated models: exactness, BiLD's limits, KV consistency."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from duetto.engine.cost_model import AcceptanceKey, CostModel
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.draft_policy import affordable_draft_length
from duetto.engine.errors import EngineError
from duetto.engine.lookup_drafter import continues_a_copy
from duetto.engine.model_session import ContextFull, ModelSession
from duetto.engine.reply_stream import StepTrace
from duetto.engine.stats import ReplyStats

SENTENCE = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire"
WORDS = SENTENCE.split(" ")


@pytest.fixture(scope="module")
def sessions(tiny_models: dict[str, Path]) -> tuple[ModelSession, ModelSession]:
    return (
        ModelSession(tiny_models["target"], context_length=512, threads=1),
        ModelSession(tiny_models["draft"], context_length=512, threads=1),
    )


@pytest.fixture
def decoder(sessions: tuple[ModelSession, ModelSession]) -> Decoder:
    target, draft = sessions
    return Decoder(target, draft)


def random_prompt(session: ModelSession, rng: random.Random) -> list[int]:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 30))]
    if rng.random() < 0.5:
        words += words[: rng.randint(2, len(words))]  # repeated text gives lookup something to copy
    return session.chat_prompt_tokens([{"role": "user", "content": " ".join(words)}])


def generate(decoder: Decoder, prompt: list[int], **settings) -> tuple[list[int], str, ReplyStats]:
    reply = decoder.reply(prompt, DecodeSettings(**settings))
    assert isinstance(reply.stats, ReplyStats)
    return reply.token_ids, reply.text, reply.stats


def test_greedy_exact_equals_target_only_for_every_drafter_and_length(decoder: Decoder) -> None:
    rng = random.Random(7)
    drafted = 0
    for _ in range(12):
        prompt = random_prompt(decoder.target, rng)
        reference, reference_text, _ = generate(decoder, prompt, mode="target", max_tokens=40)
        for drafter in ("model", "lookup", "auto"):
            length = rng.choice([1, 2, 3, 5, 8, 16, None])
            tokens, text, stats = generate(
                decoder, prompt, mode="exact", drafter=drafter, max_tokens=40, fixed_draft_length=length
            )
            assert tokens == reference, (drafter, length)
            assert text == reference_text
            assert stats.accepted <= stats.drafted
            drafted += stats.drafted
    assert drafted > 0, "the test must exercise verification, not only plain decoding"


def test_target_mode_counts_one_target_call_per_token(decoder: Decoder) -> None:
    prompt = random_prompt(decoder.target, random.Random(1))
    tokens, _, stats = generate(decoder, prompt, mode="target", max_tokens=25)

    assert stats.tokens == len(tokens) == 25
    assert stats.target_calls == 25  # the prompt's evaluation yields the first token
    assert stats.drafted == 0 and stats.mode == "target" and stats.drafter == "none"
    assert stats.finish_reason == "length"


def test_fast_mode_without_fallback_or_rollback_is_the_draft_alone(
    decoder: Decoder, sessions: tuple[ModelSession, ModelSession]
) -> None:
    draft_alone = Decoder(sessions[1])
    rng = random.Random(3)
    for _ in range(5):
        prompt = random_prompt(decoder.target, rng)
        reference, _, _ = generate(draft_alone, prompt, mode="target", max_tokens=30)
        tokens, _, stats = generate(
            decoder, prompt, mode="fast", max_tokens=30, fallback_threshold=0.0, rollback_threshold=math.inf,
            max_draft_run=0,
        )  # fmt: skip
        assert tokens == reference
        assert stats.accepted == stats.drafted == 30


def test_fast_mode_with_rollback_zero_is_the_target_alone(decoder: Decoder) -> None:
    rng = random.Random(4)
    for _ in range(5):
        prompt = random_prompt(decoder.target, rng)
        reference, _, _ = generate(decoder, prompt, mode="target", max_tokens=30)
        tokens, _, stats = generate(decoder, prompt, mode="fast", max_tokens=30, rollback_threshold=0.0)
        assert tokens == reference
        assert stats.accepted == 0


def test_fast_mode_with_defaults_mixes_both_models(decoder: Decoder) -> None:
    prompt = random_prompt(decoder.target, random.Random(5))
    reply = decoder.reply(prompt, DecodeSettings(mode="fast", max_tokens=40, fallback_threshold=0.2))

    assert len(reply.token_ids) == 40
    assert reply.stats.drafted > 0 and reply.stats.target_calls > 1
    assert set(reply.sources) == {"model", "target"}


def test_after_many_rollbacks_the_kv_caches_match_a_fresh_evaluation(
    decoder: Decoder, tiny_models: dict[str, Path]
) -> None:
    rng = random.Random(11)
    for _ in range(6):
        prompt = random_prompt(decoder.target, rng)
        generate(decoder, prompt, mode="exact", drafter="model", max_tokens=30, fixed_draft_length=rng.randint(2, 9))
        generate(decoder, prompt, mode="fast", max_tokens=30, fallback_threshold=0.3, rollback_threshold=1.0)
    for session in (decoder.target, decoder.draft):
        fresh = ModelSession(session.path, context_length=512, threads=1)
        history = list(session.tokens)
        probe = history[-1:] or [0]
        kept = session.evaluate(probe, [0])[0]
        reference = fresh.evaluate(history + probe, [len(history)])[0]
        np.testing.assert_allclose(kept, reference, rtol=1e-3, atol=1e-3)
        session.truncate(len(history))
        fresh.close()


def sampled_second_tokens(decoder: Decoder, prompt: list[int], samples: int, **settings) -> list[int]:
    """The second token of many seeded replies; in exact mode it is the one drafted and verified."""
    tokens = []
    for seed in range(samples):
        generated, _, stats = generate(decoder, prompt, max_tokens=3, temperature=1.0, top_k=8, top_p=1.0, seed=seed,
                                       **settings)  # fmt: skip
        assert stats.drafted == (1 if settings["mode"] == "exact" else 0)
        tokens.append(generated[1])
    return tokens


def test_rejection_sampling_keeps_the_targets_distribution(decoder: Decoder) -> None:
    """The second token, drafted by the model and verified by speculative sampling, is distributed
    as under the target alone (chi-square test over the most common outcomes)."""
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": "the cat sat"}])
    samples = 600
    second_reference = sampled_second_tokens(decoder, prompt, samples, mode="target")
    second_speculative = sampled_second_tokens(
        decoder, prompt, samples, mode="exact", drafter="model", fixed_draft_length=1
    )
    outcomes = sorted(set(second_reference) | set(second_speculative))
    counts = np.array([[second_reference.count(o) for o in outcomes], [second_speculative.count(o) for o in outcomes]])
    counts = counts[:, counts.sum(axis=0) >= 10]  # pool rare outcomes out of the test
    assert counts.shape[1] >= 3, "the test needs several likely outcomes"
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0, keepdims=True) / counts.sum()
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    degrees = counts.shape[1] - 1
    # 99.9% quantile of chi-square, by the Wilson-Hilferty approximation.
    critical = degrees * (1 - 2 / (9 * degrees) + 3.09 * math.sqrt(2 / (9 * degrees))) ** 3
    assert chi_square < critical, (chi_square, critical, counts)


def test_a_seed_makes_target_sampling_repeatable(decoder: Decoder) -> None:
    """With drafting, which random numbers are drawn depends on the drafts, and the draft lengths on
    measured timings; so a seed reproduces replies in mode target, while in exact mode it is the
    distribution (tested above) that is the target's."""
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": "a dog"}])
    first, _, _ = generate(decoder, prompt, mode="target", max_tokens=20, temperature=0.8, seed=42)
    again, _, _ = generate(decoder, prompt, mode="target", max_tokens=20, temperature=0.8, seed=42)
    other, _, _ = generate(decoder, prompt, mode="target", max_tokens=20, temperature=0.8, seed=43)

    assert first == again
    assert first != other


def test_stop_strings_cancellation_and_context_limits(decoder: Decoder) -> None:
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": "the cat"}])
    _, full_text, _ = generate(decoder, prompt, mode="target", max_tokens=20)
    stop = full_text[len(full_text) // 2 : len(full_text) // 2 + 2]
    _, stopped_text, stats = generate(decoder, prompt, mode="exact", max_tokens=20, stop=(stop,))
    assert stopped_text == full_text[: full_text.index(stop)]
    assert stats.finish_reason == "stop"

    items = list(decoder.generate(prompt, DecodeSettings(max_tokens=20), should_cancel=lambda: True))
    assert items[-1].finish_reason == "cancelled" and items[-1].tokens == 1

    too_long = decoder.target.chat_prompt_tokens([{"role": "user", "content": "word " * 600}])
    with pytest.raises(ContextFull, match="context holds 512"):
        list(decoder.generate(too_long, DecodeSettings(max_tokens=4)))


def test_fast_mode_needs_a_draft_model(sessions: tuple[ModelSession, ModelSession]) -> None:
    with pytest.raises(EngineError, match="fast mode needs a draft model"):
        list(Decoder(sessions[0]).generate([1, 2, 3], DecodeSettings(mode="fast")))


def test_the_loss_budget_bounds_how_long_a_draft_may_be() -> None:
    """A draft's worst case (all rejected) must fit 3 plain tokens' time (8 right after a draft was
    accepted whole) plus 5% of the reply plus what drafting saved: with verification costing n units
    for n tokens, a fresh reply may draft 3 tokens, one 100 tokens in that saved 20.5 units may
    draft 3 + 5 + 20, or 8 + 5 + 20 in the middle of a copy."""
    cost_model = CostModel()
    for size in range(1, 80):
        cost_model.observe_verify(size, size * 0.01)

    def affordable(limit: int, *, reply_tokens: int = 0, spent_seconds: float = 0.0, mid_copy: bool = False) -> int:
        return affordable_draft_length(
            cost_model, limit, reply_tokens=reply_tokens, spent_seconds=spent_seconds, mid_copy=mid_copy
        )

    assert affordable(64) == 3
    # 100 plain tokens would have taken 1.0 s: 0.205 s saved
    assert affordable(64, reply_tokens=100, spent_seconds=0.795) == 28
    assert affordable(64, reply_tokens=100, spent_seconds=0.795, mid_copy=True) == 33
    assert affordable(10, reply_tokens=100, spent_seconds=0.795, mid_copy=True) == 10


def test_only_the_longest_matches_count_as_continuing_a_copy() -> None:
    continuing = [
        AcceptanceKey("lookup", "tokens", 16, True),
        AcceptanceKey("lookup", "tokens", 16, False),
        AcceptanceKey("lookup", "text", 48, True),
    ]
    starting = [
        AcceptanceKey("lookup", "tokens", 8, True), AcceptanceKey("lookup", "tokens", 1, False),
        AcceptanceKey("lookup", "text", 12, True), AcceptanceKey("model"), None,
    ]  # fmt: skip
    assert all(map(continues_a_copy, continuing))
    assert not any(map(continues_a_copy, starting))
    assert str(continuing[2]) == "lookup:text48:unique" and str(starting[1]) == "lookup:1:ambiguous"


def test_every_verification_reaches_the_step_hook_in_both_modes(decoder: Decoder) -> None:
    prompt = random_prompt(decoder.target, random.Random(2))
    for settings in (
        DecodeSettings(mode="exact", drafter="model", max_tokens=30, fixed_draft_length=4),
        DecodeSettings(mode="fast", max_tokens=30, fallback_threshold=0.2),
    ):
        steps: list[StepTrace] = []
        items = list(decoder.generate(prompt, settings, on_step=steps.append))
        stats = items[-1]
        assert isinstance(stats, ReplyStats)
        assert sum(len(step.drafted) for step in steps) == stats.drafted > 0
        assert sum(step.accepted for step in steps) == stats.accepted
        assert all(step.drafter == "model" and step.verify_seconds > 0 for step in steps if step.drafted)


def test_fast_mode_teaches_the_cost_model_what_verification_costs(sessions) -> None:
    decoder = Decoder(*sessions)
    prompt = random_prompt(decoder.target, random.Random(6))
    decoder.reply(prompt, DecodeSettings(mode="fast", max_tokens=30, fallback_threshold=0.2))
    assert decoder.cost_model.verify_seconds, "fast mode's verifications are timed for the cost model"
    assert decoder.cost_model.draft_seconds_per_token["model"].observations > 0
    assert decoder.drafters["model"].stats.drafted > 0


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_a_stop_while_the_prompt_is_read_ends_the_reply_between_pieces(decoder: Decoder, mode: str) -> None:
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": " ".join(WORDS * 8)}])
    assert 200 < len(prompt) < 400
    decoder.target.truncate(0)
    progress: list[tuple[int, int]] = []

    items = list(
        decoder.generate(
            prompt, DecodeSettings(mode=mode, max_tokens=8), should_cancel=lambda: bool(progress),
            on_prompt_progress=lambda read, total: progress.append((read, total)),
        )
    )  # fmt: skip

    stats = items[-1]
    assert isinstance(stats, ReplyStats) and stats.finish_reason == "cancelled" and stats.tokens == 0
    assert len(progress) == 1 and progress[0][0] < progress[0][1], "stopped after the first piece"
    assert len(decoder.target.tokens) == progress[0][0], "what was read stays in the cache, nothing more"


def test_a_prompt_read_in_pieces_gives_the_same_reply(decoder: Decoder) -> None:
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": " ".join(WORDS * 8)}])
    decoder.target.truncate(0)
    progress: list[tuple[int, int]] = []

    items = list(decoder.generate(prompt, DecodeSettings(mode="target", max_tokens=12),
                                  on_prompt_progress=lambda read, total: progress.append((read, total))))  # fmt: skip
    decoder.target.truncate(0)
    logits = decoder.target.evaluate(prompt, [len(prompt) - 1])[0]

    assert progress[-1] == (len(prompt), len(prompt)) and len(progress) >= 2
    assert [read for read, _ in progress] == sorted(read for read, _ in progress)
    assert items[0].token_ids[0] == int(np.argmax(logits)), "the same first token as one big batch"
    assert isinstance(items[-1], ReplyStats) and items[-1].finish_reason in ("stop", "length")


def test_a_stop_while_the_draft_model_reads_the_prompt_ends_the_reply(decoder: Decoder) -> None:
    prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": " ".join(WORDS * 8)}])
    decoder.target.truncate(0)
    assert decoder.draft is not None
    decoder.draft.truncate(0)
    reads: list[int] = []
    real_evaluate = decoder.draft.evaluate

    def counting_evaluate(tokens, rows=()):
        reads.append(len(tokens))
        return real_evaluate(tokens, rows)

    decoder.draft.evaluate = counting_evaluate
    try:
        settings = DecodeSettings(mode="exact", drafter="model", max_tokens=8, fixed_draft_length=4)
        items = list(decoder.generate(prompt, settings, should_cancel=lambda: len(reads) >= 1))
    finally:
        del decoder.draft.evaluate

    assert isinstance(items[-1], ReplyStats) and items[-1].finish_reason == "cancelled"
    assert len(decoder.draft.tokens) < len(prompt) - 1, "the draft model stopped reading between pieces"


def test_earlier_turns_draft_without_changing_the_reply(decoder: Decoder) -> None:
    """Turns folded out of the prompt are a drafting source: a reply that repeats one is drafted
    from it (fewer target calls) and is the target's own, token for token."""
    rng = random.Random(5)
    for _ in range(4):
        prompt = random_prompt(decoder.target, rng)
        reference = decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=48))
        unrelated = decoder.target.tokenize(" ".join(rng.choice(WORDS) for _ in range(40)))
        earlier = [*unrelated, decoder.target.llm.token_eos(), *reference.token_ids]
        settings = DecodeSettings(mode="exact", drafter="lookup", max_tokens=48, fixed_draft_length=8)
        recalled = decoder.reply(prompt, settings, earlier=earlier)
        assert recalled.token_ids == reference.token_ids
        assert recalled.stats.target_calls < reference.stats.target_calls, "the earlier turn was copied"
        assert recalled.stats.prediction_accepted == 0, "not counted as the client's prediction"


def test_a_prediction_drafts_without_changing_the_reply(decoder: Decoder) -> None:
    """OpenAI's predicted outputs: the lookup drafter copies from the caller's prediction; greedy
    output is the target's with or without one, and the counts say how much of it was used."""
    rng = random.Random(11)
    for _ in range(6):
        prompt = random_prompt(decoder.target, rng)
        reference = decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=48))
        plain = decoder.reply(prompt, DecodeSettings(mode="exact", drafter="lookup", max_tokens=48))
        right = decoder.reply(  # a fixed length: whether drafts pay is the cost model's call, by timings
            prompt,
            DecodeSettings(mode="exact", drafter="lookup", max_tokens=48, fixed_draft_length=8),
            prediction=reference.token_ids,
        )
        wrong_tokens = decoder.target.tokenize(" ".join(rng.choice(WORDS) for _ in range(40)))
        wrong = decoder.reply(
            prompt, DecodeSettings(mode="exact", drafter="auto", max_tokens=48), prediction=wrong_tokens
        )
        target_only = decoder.reply(
            prompt, DecodeSettings(mode="target", max_tokens=48), prediction=reference.token_ids
        )
        for reply in (plain, right, wrong, target_only):
            assert reply.token_ids == reference.token_ids
        assert right.stats.prediction_rejected == 0 or right.stats.prediction_accepted > 0
        assert right.stats.prediction_accepted + right.stats.prediction_rejected <= right.stats.drafted
        assert right.stats.target_calls < reference.stats.target_calls, "a right prediction saves target calls"
        assert target_only.stats.prediction_accepted == target_only.stats.prediction_rejected == 0
        assert plain.stats.prediction_accepted == plain.stats.prediction_rejected == 0
    # Across these prompts most of a right prediction goes into the reply (its first token is the
    # target's own: the prediction is matched from the reply's first token on).
    assert right.stats.prediction_accepted >= reference.stats.tokens // 2
