"""Draft-verify decoding: the one place where drafts are verified and the target's KV cache rolled back.

Each step the target holds in its KV cache every committed token but the last
(``pending``). A drafter proposes tokens d1..dk; the target evaluates
[pending, d1..dk] in one batch with logits on every row; row i says what the
target wants after d1..di. The accepted prefix is committed with the target's own
token after it, and the KV cache is cut back to the committed text. With k = 0
this is ordinary target decoding, which is exactly how mode ``target`` runs, so
the modes are compared on the same code path.

Modes:
- ``target``: the target alone.
- ``exact``: lossless. Greedy: a draft token is accepted iff it is the target's
  argmax. Sampling: speculative sampling (see ``sampling.accept_or_replace``).
  The cost model picks the drafter and draft length each step, zero included.
- ``fast``: Big Little Decoder. The small model writes while its top probability
  stays at or above ``fallback_threshold`` and its run is shorter than
  ``max_draft_run``; then the target checks the run in one pass and rolls back
  from the first token whose cross-entropy under the target exceeds
  ``rollback_threshold``, putting its own token there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from duetto.engine.cost_model import CostModel
from duetto.engine.drafters import Draft, LookupDrafter, ModelDrafter
from duetto.engine.errors import EngineError
from duetto.engine.model_session import ModelSession
from duetto.engine.sampling import SamplingSettings, accept_or_replace, choose, distribution, top_two_gap
from duetto.engine.stats import FinishReason, Mode, ReplyStats
from duetto.engine.text_stream import TextStream

DrafterName = Literal["auto", "model", "lookup", "none"]
# A draft must promise this much more throughput than plain decoding, and more again once drafting
# has cost time in this reply; chosen with a replay of the bench prompts against measured CPU
# verification costs (docs/BENCHMARKS.md), where a failed long draft costs as much as ten tokens.
REQUIRED_GAIN = 1.3
REQUIRED_GAIN_WHEN_BEHIND = 1.3
MAX_DRAFT_TOKENS = 64  # on a CPU, per-token verification cost keeps falling up to ~48-64 tokens
# A draft may risk losing (if its first token is rejected) at most this many plain tokens' time,
# plus a share of the reply so far, plus whatever drafting has saved in this reply: the bound on
# how much slower than the target alone exact mode can be. Drafts fail mostly at their first token,
# where a match starts (the reply restates a question, adds a comma, makes the edit); in the middle
# of a copy (a draft was just accepted whole, or the match is long) a draft may risk more.
LOSS_ALLOWANCE_TOKENS = 3.0
LOSS_ALLOWANCE_TOKENS_MID_COPY = 8.0
LOSS_ALLOWANCE_SHARE = 0.05


@dataclass(frozen=True)
class DecodeSettings:
    mode: Mode = "exact"
    drafter: DrafterName = "auto"
    max_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_draft_tokens: int = MAX_DRAFT_TOKENS
    fixed_draft_length: int | None = None  # bypass the cost model (tests, experiments)
    # fast mode's defaults: BiLD's reference values, but for a run of 24 (not 10), chosen by
    # measurement on the public prompt set (docs/BENCHMARKS.md, "Choosing fast mode's settings").
    fallback_threshold: float = 0.6
    rollback_threshold: float = 5.0
    max_draft_run: int = 24
    record_top_two_gaps: bool = False

    @property
    def sampling(self) -> SamplingSettings:
        return SamplingSettings(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)


@dataclass
class Generation:
    """What one reply produced, beyond its text (the bench and tests read these)."""

    tokens: list[int] = field(default_factory=list)
    top_two_gaps: list[float] = field(default_factory=list)
    drafted_by: list[str] = field(default_factory=list)  # per token: "target", "model" or "lookup"
    text_spans: list[tuple[str, str]] = field(default_factory=list)
    """(source, text) in order, one per piece of text released: joined, they are the reply's text.

    A piece goes to the token that released it, so a character split across tokens belongs to the
    token that completed it (text held back while it might begin a stop string goes to the token
    that let it out). Spans arrive in step with the deltas ``generate`` yields."""
    stats: ReplyStats | None = None


class Decoder:
    """Owns the target (and optional draft) session and runs one generation at a time."""

    def __init__(self, target: ModelSession, draft: ModelSession | None = None) -> None:
        self.target = target
        self.draft = draft
        self.lookup = LookupDrafter(target)
        self.model_drafter = ModelDrafter(draft) if draft is not None else None
        self.cost_model = CostModel()
        self.last_generation = Generation()

    def generate(
        self,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        should_cancel: Callable[[], bool] | None = None,
        on_prompt_progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[str | ReplyStats]:
        """Yield text deltas, then one ReplyStats; ``should_cancel`` is checked between steps and
        between the pieces a long prompt is read in, after each of which ``on_prompt_progress(read,
        total)`` is called (tokens of the prompt not already in the cache)."""
        if settings.mode == "fast" and self.model_drafter is None:
            raise EngineError("fast mode needs a draft model; use a profile with one, or --mode exact")
        if settings.drafter == "model" and self.model_drafter is None:
            raise EngineError("--draft model needs a draft model; use a profile with one")
        if not prompt_tokens:
            raise EngineError("the prompt is empty")
        run = _Run(self, prompt_tokens, settings, should_cancel, on_prompt_progress)
        self.last_generation = run.generation  # updated live: a UI may read its token count
        yield from run.execute()

    def reply(
        self,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        on_delta: Callable[[str], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> tuple[str, ReplyStats]:
        """Run ``generate`` to the end: (the whole text, its stats), each delta passed to ``on_delta``."""
        pieces: list[str] = []
        for item in self.generate(prompt_tokens, settings, should_cancel):
            if isinstance(item, ReplyStats):
                return "".join(pieces), item
            pieces.append(item)
            if on_delta is not None:
                on_delta(item)
        raise AssertionError("generate always ends with stats")


class _Run:
    """One generation's state; the decoder keeps what outlives it (sessions, cost model)."""

    def __init__(
        self,
        decoder: Decoder,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        should_cancel: Callable[[], bool] | None,
        on_prompt_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.decoder = decoder
        self.on_prompt_progress = on_prompt_progress
        self.target = decoder.target
        self.settings = settings
        self.sampling = settings.sampling
        self.should_cancel = should_cancel
        self.rng = np.random.default_rng(settings.seed)
        self.prompt = list(prompt_tokens)
        self.history = list(prompt_tokens)
        self.text = TextStream(settings.stop)
        self.generation = Generation()
        self.finish_reason: FinishReason | None = None
        self.drafted = 0
        self.accepted = 0
        self.target_calls = 0
        self.drafters_used: set[str] = set()
        self.spent_seconds = 0.0  # time in verification and model drafting, to compare with plain decoding
        self.mid_copy = False  # the last step's draft was accepted whole
        self.deltas: list[str] = []

    # --- committing tokens ----------------------------------------------------------------

    def commit(self, token: int, source: str, gap: float | None = None) -> bool:
        """Append one token to the reply; False once the reply is finished."""
        if self.target.is_end_of_generation(token):
            self.finish_reason = "stop"
            return False
        self.history.append(token)
        self.generation.tokens.append(token)
        self.generation.drafted_by.append(source)
        if gap is not None:
            self.generation.top_two_gaps.append(gap)
        delta = self.text.push(self.target.token_bytes(token))
        if delta:
            self.deltas.append(delta)
            self.generation.text_spans.append((source, delta))
        if self.text.stopped:
            self.finish_reason = "stop"
        elif len(self.generation.tokens) >= self.settings.max_tokens:
            self.finish_reason = "length"
        elif len(self.history) >= self.target.context_length - 1:
            self.finish_reason = "context"
        elif self.should_cancel is not None and self.should_cancel():
            self.finish_reason = "cancelled"
        return self.finish_reason is None

    def commit_step(self, accepted: list[int], source: str, target_token: int, gaps: list[float | None]) -> bool:
        """Commit the accepted draft tokens, then the target's own token; False once finished.

        ``gaps`` holds a top-2 gap (or None) for each of those tokens, target's last.
        """
        for token, gap in zip(accepted, gaps, strict=False):
            if not self.commit(token, source, gap):
                return False
        return self.commit(target_token, "target", gaps[len(accepted)])

    def flush_deltas(self) -> Iterator[str]:
        if self.deltas:
            yield "".join(self.deltas)
            self.deltas.clear()

    # --- the target ---------------------------------------------------------------------

    def verify(self, pending: int, draft_tokens: list[int]) -> np.ndarray:
        """Target logits after [pending, d1..dk]: k + 1 rows, timed for the cost model."""
        started = time.perf_counter()
        batch = [pending, *draft_tokens]
        logits = self.target.evaluate(batch, list(range(len(batch))))
        seconds = time.perf_counter() - started
        self.decoder.cost_model.observe_verify(len(batch), seconds)
        self.spent_seconds += seconds
        self.target_calls += 1
        return logits

    def keep_prompt_prefix(self) -> None:
        """Cut the target's KV cache back to what it shares with the prompt, minus at least the
        prompt's last token (whose logits the next evaluation must produce)."""
        self.target.truncate(min(self.target.common_prefix_length(self.prompt), len(self.prompt) - 1))

    def prefill(self) -> np.ndarray | None:
        """Evaluate the prompt, reusing the KV prefix it shares with the last generation; None when
        cancelled while reading it."""
        self.keep_prompt_prefix()
        remainder = self.prompt[len(self.target.tokens) :]
        return self.target.evaluate_prompt(
            remainder, should_stop=self.should_cancel, on_progress=self.on_prompt_progress
        )

    # --- the loop ----------------------------------------------------------------------

    def execute(self) -> Iterator[str | ReplyStats]:
        started = time.perf_counter()
        self.decoder.lookup.begin(self.prompt)
        record_gaps = self.settings.record_top_two_gaps
        steps: Iterator[None]
        if self.settings.mode == "fast":
            steps = self.fast_steps()
        else:
            logits = self.prefill()
            self.target_calls += 1
            if logits is None:
                self.finish_reason = "cancelled"
                steps = iter(())
            else:
                first = choose(logits, self.sampling, self.rng)
                steps = self.exact_steps(first, top_two_gap(logits) if record_gaps else None)
        first_token_at: float | None = None
        for _ in steps:
            if first_token_at is None:
                first_token_at = time.perf_counter()
            yield from self.flush_deltas()
            if self.finish_reason is not None:
                break
        tail = self.text.flush()
        if tail:
            self.generation.text_spans.append((self.generation.drafted_by[-1], tail))
            yield tail
        finished = time.perf_counter()
        first_token_at = first_token_at or finished
        tokens = len(self.generation.tokens)
        decode_seconds = finished - first_token_at
        stats = ReplyStats(
            prompt_tokens=len(self.prompt),
            tokens=tokens,
            seconds=round(finished - started, 4),
            tokens_per_second=round((tokens - 1) / decode_seconds, 2) if tokens > 1 and decode_seconds > 0 else 0.0,
            ttft_seconds=round(first_token_at - started, 4),
            drafted=self.drafted,
            accepted=self.accepted,
            target_calls=self.target_calls,
            mode=self.settings.mode,
            drafter=self.drafter_label(),
            finish_reason=self.finish_reason or "length",
        )
        self.generation.stats = stats
        yield stats

    def drafter_label(self) -> str:
        if self.settings.mode == "target":
            return "none"
        if self.settings.mode == "fast":
            return "model"
        if self.settings.drafter == "auto":
            used = "+".join(sorted(self.drafters_used)) or "none"
            return f"auto({used})"
        return self.settings.drafter

    def exact_steps(self, first: int, first_gap: float | None) -> Iterator[None]:
        """Exact (and target-only) decoding; yields after each step's tokens are committed."""
        if not self.commit(first, "target", first_gap):
            yield
            return
        yield
        record_gaps = self.settings.record_top_two_gaps
        while True:
            pending = self.history[-1]
            draft = self.propose()
            logits = self.verify(pending, draft.tokens)
            accepted_count, next_token = self.judge(draft, logits)
            self.drafted += len(draft.tokens)
            self.accepted += accepted_count
            source = draft.acceptance_key.split(":")[0]
            if draft.tokens:
                self.drafters_used.add(source)
                self.decoder.cost_model.observe_acceptance(draft.acceptance_key, len(draft.tokens), accepted_count)
            self.mid_copy = bool(draft.tokens) and accepted_count == len(draft.tokens)
            # The KV cache now holds the committed text through pending plus every drafted token;
            # keep it through the last accepted one.
            self.target.truncate(len(self.history) + accepted_count)
            gaps = [top_two_gap(logits[row]) if record_gaps else None for row in range(accepted_count + 1)]
            still_going = self.commit_step(draft.tokens[:accepted_count], source, next_token, gaps)
            yield
            if not still_going:
                return

    def judge(self, draft: Draft, logits: np.ndarray) -> tuple[int, int]:
        """(how many drafted tokens are accepted, the token that follows them)."""
        if self.sampling.greedy:
            choices = np.argmax(logits, axis=1)
            accepted = 0
            while accepted < len(draft.tokens) and int(choices[accepted]) == draft.tokens[accepted]:
                accepted += 1
            return accepted, int(choices[accepted])
        for index, token in enumerate(draft.tokens):
            target_distribution = distribution(logits[index], self.sampling)
            was_accepted, emitted = accept_or_replace(token, target_distribution, draft.distributions[index], self.rng)
            if not was_accepted:
                return index, emitted
        return len(draft.tokens), choose(logits[len(draft.tokens)], self.sampling, self.rng)

    def propose(self) -> Draft:
        """This step's draft, from the drafter and with the length the cost model expects to pay best."""
        settings = self.settings
        if settings.mode == "target" or settings.drafter == "none":
            return Draft()
        remaining = settings.max_tokens - len(self.generation.tokens)
        limit = min(settings.max_draft_tokens, remaining - 1, self.target.context_length - len(self.history) - 2)
        if limit <= 0:
            return Draft()
        cost_model = self.decoder.cost_model
        if settings.fixed_draft_length is not None:
            return self.fixed_length_draft(min(limit, settings.fixed_draft_length))
        in_copy_limit = self.affordable_draft_length(limit, in_copy=True)
        # For drafts that start a match; right after a full acceptance every draft is mid-copy.
        limit = in_copy_limit if self.mid_copy else self.affordable_draft_length(limit)
        if in_copy_limit <= 0:
            return Draft()
        options: list[tuple[float, str, int, list[int], str]] = []  # (rate, drafter, length, tokens, key)
        if settings.drafter in ("auto", "lookup"):
            offered = set()
            for tokens, key in self.decoder.lookup.candidates(self.history, in_copy_limit):
                if not LookupDrafter.continues_a_copy(key):
                    tokens = tokens[:limit]
                if not tokens:
                    continue
                length, rate = cost_model.best_length(
                    cost_model.acceptance_rate(key), len(tokens), cost_model.draft_cost("lookup")
                )
                options.append((rate, "lookup", length, tokens[:length], key))
                offered.add(key)
            for bucket_key in list(cost_model.acceptance):
                if bucket_key.startswith("lookup") and bucket_key not in offered:
                    cost_model.relax(bucket_key)
        if settings.drafter in ("auto", "model") and self.decoder.model_drafter is not None and limit > 0:
            length, rate = cost_model.best_length(
                cost_model.acceptance_rate("model"), limit, cost_model.draft_cost("model")
            )
            options.append((rate, "model", length, [], "model"))
        baseline = 1.0 / cost_model.verify_cost(1) if cost_model.verify_cost(1) > 0 else 0.0
        behind = self.spent_seconds > len(self.generation.tokens) * cost_model.verify_cost(1)
        required = baseline * REQUIRED_GAIN * (REQUIRED_GAIN_WHEN_BEHIND if behind else 1.0)
        options = [option for option in options if option[2] > 0 and option[0] > required]
        if not options:
            cost_model.relax("model")
            return Draft()
        rate, drafter, length, tokens, key = max(options, key=lambda option: option[0])
        if drafter == "lookup":
            if self.decoder.model_drafter is not None:
                cost_model.relax("model")
            return Draft(tokens=tokens, distributions=[None] * len(tokens), acceptance_key=key)
        draft = self.decoder.model_drafter.draft(
            self.history,
            limit,
            sampling=self.sampling,
            rng=self.rng,
            keep_going=lambda probability, drafted: cost_model.worth_extending(probability, "model", drafted),
            should_stop=self.should_cancel,
        )
        if draft.seconds > 0:  # a draft stopped while reading the prompt measured nothing
            cost_model.observe_draft("model", len(draft.tokens), draft.seconds)
        self.spent_seconds += draft.seconds
        return draft

    def affordable_draft_length(self, limit: int, *, in_copy: bool = False) -> int:
        """The longest draft whose worst case (every drafted token rejected) stays within the
        reply's loss budget: a fixed allowance (larger in the middle of a copy: right after a draft
        was accepted whole, or ``in_copy`` for a draft continuing a long match), a share of the
        reply so far, and what drafting has saved against plain decoding. Long drafts pay only when
        accepted whole on a CPU, so this is what keeps a run of failed ones from making a reply
        much slower than the target alone, short replies included."""
        cost_model = self.decoder.cost_model
        one_token = cost_model.verify_cost(1)
        tokens = len(self.generation.tokens)
        saved = tokens * one_token - self.spent_seconds
        allowance = LOSS_ALLOWANCE_TOKENS_MID_COPY if self.mid_copy or in_copy else LOSS_ALLOWANCE_TOKENS
        budget = (allowance + LOSS_ALLOWANCE_SHARE * tokens) * one_token + saved
        length = 0
        while length < limit and cost_model.verify_cost(length + 2) - one_token <= budget:
            length += 1
        return length

    def fixed_length_draft(self, length: int) -> Draft:
        if length <= 0:
            return Draft()
        if self.settings.drafter == "model" or (self.settings.drafter == "auto" and self.decoder.model_drafter):
            return self.decoder.model_drafter.draft(
                self.history, length, sampling=self.sampling, rng=self.rng, should_stop=self.should_cancel
            )
        return self.decoder.lookup.draft(self.history, length)

    # --- fast mode (BiLD) ----------------------------------------------------------------

    def fast_steps(self) -> Iterator[None]:
        settings = self.settings
        drafter = self.decoder.model_drafter
        assert drafter is not None
        # The target reads the prompt now (all but its last token, whose logits a check will need),
        # so that its later checks only evaluate new tokens.
        self.keep_prompt_prefix()
        unread = self.prompt[len(self.target.tokens) : -1]
        if unread:
            logits = self.target.evaluate_prompt(
                unread, should_stop=self.should_cancel, on_progress=self.on_prompt_progress
            )
            if logits is None:
                self.finish_reason = "cancelled"
                return
        self.target_calls += 1
        run_limit = settings.max_draft_run if settings.max_draft_run > 0 else math.inf
        while True:
            remaining = settings.max_tokens - len(self.generation.tokens)
            draft = drafter.draft(
                self.history,
                int(min(run_limit, remaining)),
                sampling=self.sampling,
                rng=self.rng,
                min_confidence=settings.fallback_threshold,
                should_stop=self.should_cancel,
            )
            self.drafted += len(draft.tokens)
            reached_end = len(draft.tokens) >= remaining or (
                draft.tokens and self.target.is_end_of_generation(draft.tokens[-1])
            )
            if reached_end and math.isinf(settings.rollback_threshold) and math.isinf(run_limit):
                # Nobody would check these tokens: the small model's run is the reply.
                self.accepted += len(draft.tokens)
                for token in draft.tokens:
                    if not self.commit(token, "model"):
                        break
                yield
                return
            # Fallback: the target checks the run in one pass and writes the next token itself. Its KV
            # cache lags the committed text by at least the last token, whose logits judge draft[0].
            committed_before = len(self.history)
            evaluated = self.history[len(self.target.tokens) :] + draft.tokens
            first_row = len(evaluated) - len(draft.tokens) - 1
            logits = self.target.evaluate(evaluated, list(range(first_row, len(evaluated))))
            self.target_calls += 1
            accepted_count = len(draft.tokens)
            for index, token in enumerate(draft.tokens):
                log_probabilities = logits[index] - _log_sum_exp(logits[index])
                if -float(log_probabilities[token]) > settings.rollback_threshold:
                    accepted_count = index
                    break
            self.accepted += accepted_count
            self.target.truncate(committed_before + accepted_count)
            target_token = choose(logits[accepted_count], self.sampling, self.rng)
            still_going = self.commit_step(
                draft.tokens[:accepted_count], "model", target_token, [None] * (accepted_count + 1)
            )
            yield
            if not still_going:
                return


def _log_sum_exp(values: np.ndarray) -> float:
    peak = float(values.max())
    return peak + math.log(float(np.exp(values - peak, dtype=np.float64).sum()))
