"""Draft-verify decoding: the one place where drafts are verified and the target's KV cache rolled back.

Each step the target holds in its KV cache every committed token but the last
(``pending``). A drafter proposes tokens d1..dk; the target evaluates
[pending, d1..dk] in one batch with logits on every row; row i says what the
target wants after d1..di. The accepted prefix is committed with the target's own
token after it, and the KV cache is cut back to the committed text. With k = 0
this is ordinary target decoding, which is exactly how mode ``target`` runs, so
the modes are compared on the same code path. Exact and fast mode verify in one function
(``_Run.verify``), and differ only in how a draft token is judged and who drafts.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from duetto.engine.cost_model import CostModel
from duetto.engine.draft_policy import step_plan
from duetto.engine.drafters import DrafterChoice, build_drafters, drafters_for
from duetto.engine.drafting import Draft, Drafter, DraftRequest, Source
from duetto.engine.errors import EngineError
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_training import TargetReading, read_in_context
from duetto.engine.reply_stream import Reply, StepTrace, TextPiece, Written, collect_reply
from duetto.engine.sampling import SamplingSettings, accept_or_replace, choose, distribution, top_two_gap
from duetto.engine.stats import FinishReason, Mode, ReplyStats
from duetto.engine.text_stream import TextStream

MAX_DRAFT_TOKENS = 64  # on a CPU, per-token verification cost keeps falling up to ~48-64 tokens
Judge = Callable[[Draft, np.ndarray], tuple[int, int]]


@dataclass(frozen=True)
class DecodeSettings:
    mode: Mode = "exact"
    drafter: DrafterChoice = "auto"
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


SHORT_LEAD = 16
"""Prompt tokens before a kept span that are read in its batches rather than on their own (a chat
template's few tokens between the last reply and the new message); a longer lead, a new chat's
whole history, is read plainly in pieces, with progress and cancelling."""


@dataclass(frozen=True)
class KeepReading:
    """Keep the plain target's reading (``TargetReading``) of the prompt's tokens ``start:end`` as
    it reads them, for a user's plugin to train on later without reading them again: a chat
    message as it is typed. ``receive`` gets it before the reply's first token. Nothing is kept
    when those tokens are already in the KV cache (the same question asked again)."""

    start: int
    end: int
    receive: Callable[[TargetReading], None]


class Decoder:
    """Owns the target (and optional draft) session and runs one generation at a time."""

    def __init__(self, target: ModelSession, draft: ModelSession | None = None) -> None:
        self.target = target
        self.draft = draft
        self.drafters: dict[str, Drafter] = build_drafters(target, draft)
        self.cost_model = CostModel()
        """What verification and drafting cost on this machine and how often drafts pass; it
        carries over between replies, as the chat app wants (``duetto bench --cold`` resets it)."""

    def use_target(self, target: ModelSession) -> None:
        """Decode with ``target`` from the next reply on: the same model with another plugin (the
        drafters are built again over it; what the cost model learnt of this machine stays)."""
        self.target = target
        self.drafters = build_drafters(target, self.draft)

    def generate(
        self,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        should_cancel: Callable[[], bool] | None = None,
        on_prompt_progress: Callable[[int, int], None] | None = None,
        on_step: Callable[[StepTrace], None] | None = None,
        prediction: Sequence[int] = (),
        earlier: Sequence[int] = (),
        keep_reading: KeepReading | None = None,
    ) -> Iterator[Written | ReplyStats]:
        """Yield what each step writes, then one ReplyStats.

        ``should_cancel`` is checked between steps and between the pieces a long prompt is read
        in, after each of which ``on_prompt_progress(read, total)`` is called (tokens of the
        prompt not already in the cache); ``on_step`` sees every verification. ``prediction``
        (tokens the caller expects the reply to resemble) is a source the lookup drafter copies
        from in exact mode; it changes what is drafted, never what is written. So is ``earlier``:
        the conversation's turns folded out of the prompt. ``keep_reading``: see KeepReading.
        """
        if settings.mode == "fast" and "model" not in self.drafters:
            raise EngineError("fast mode needs a draft model; use a profile with one, or --mode exact")
        if settings.drafter == "model" and "model" not in self.drafters:
            raise EngineError("--draft model needs a draft model; use a profile with one")
        if not prompt_tokens:
            raise EngineError("the prompt is empty")
        run = _Run(
            self, prompt_tokens, settings, should_cancel, on_prompt_progress, on_step, prediction, earlier, keep_reading
        )
        yield from run.execute()

    def reply(
        self,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        on_delta: Callable[[str], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        on_written: Callable[[Written], None] | None = None,
        prediction: Sequence[int] = (),
        on_prompt_progress: Callable[[int, int], None] | None = None,
        earlier: Sequence[int] = (),
        keep_reading: KeepReading | None = None,
    ) -> Reply:
        """Run ``generate`` to the end and collect the reply; each step's text goes to ``on_delta``
        (when there is any), each step whole to ``on_written``."""
        stream = self.generate(
            prompt_tokens, settings, should_cancel, on_prompt_progress,
            prediction=prediction, earlier=earlier, keep_reading=keep_reading,
        )  # fmt: skip
        return collect_reply(stream, on_delta, on_written)


class _Run:
    """One generation's state; the decoder keeps what outlives it (sessions, drafters, cost model)."""

    def __init__(
        self,
        decoder: Decoder,
        prompt_tokens: list[int],
        settings: DecodeSettings,
        should_cancel: Callable[[], bool] | None,
        on_prompt_progress: Callable[[int, int], None] | None,
        on_step: Callable[[StepTrace], None] | None,
        prediction: Sequence[int] = (),
        earlier: Sequence[int] = (),
        keep_reading: KeepReading | None = None,
    ) -> None:
        self.decoder = decoder
        self.prediction = list(prediction)
        self.earlier = earlier
        self.cost_model = decoder.cost_model
        self.on_prompt_progress = on_prompt_progress
        self.on_step = on_step
        self.target = decoder.target
        self.settings = settings
        self.sampling = settings.sampling
        self.should_cancel = should_cancel
        self.rng = np.random.default_rng(settings.seed)
        self.prompt = list(prompt_tokens)
        self.history = list(prompt_tokens)
        self.text = TextStream(settings.stop)
        self.reply_tokens = 0
        self.prompt_read_tokens = 0
        self.keep_reading = keep_reading
        self.last_source: Source = "target"
        self.finish_reason: FinishReason | None = None
        self.drafted = 0
        self.accepted = 0
        self.target_calls = 0
        self.drafters_used: set[str] = set()
        self.prediction_accepted = 0
        self.prediction_rejected = 0
        self.spent_seconds = 0.0  # time in verification and drafting, to compare with plain decoding
        self.mid_copy = False  # the last step's draft was accepted whole
        self.step_pieces: list[TextPiece] = []
        self.step_tokens: list[int] = []
        self.step_sources: list[Source] = []
        self.step_gaps: list[float] = []

    # --- committing tokens ----------------------------------------------------------------

    def commit(self, token: int, source: Source, gap: float | None = None) -> bool:
        """Append one token to the reply; False once the reply is finished."""
        if self.target.is_end_of_generation(token):
            self.finish_reason = "stop"
            return False
        self.history.append(token)
        self.reply_tokens += 1
        self.step_tokens.append(token)
        self.step_sources.append(source)
        self.last_source = source
        if gap is not None:
            self.step_gaps.append(gap)
        delta = self.text.push(self.target.token_bytes(token))
        if delta:
            self.step_pieces.append(TextPiece(delta, source))
        if self.text.stopped:
            self.finish_reason = "stop"
        elif self.reply_tokens >= self.settings.max_tokens:
            self.finish_reason = "length"
        elif len(self.history) >= self.target.context_length - 1:
            self.finish_reason = "context"
        elif self.should_cancel is not None and self.should_cancel():
            self.finish_reason = "cancelled"
        return self.finish_reason is None

    def commit_step(self, accepted: list[int], source: Source, target_token: int, gaps: list[float | None]) -> bool:
        """Commit the accepted draft tokens, then the target's own token; False once finished.

        ``gaps`` holds a top-2 gap (or None) for each of those tokens, target's last.
        """
        for token, gap in zip(accepted, gaps, strict=False):
            if not self.commit(token, source, gap):
                return False
        return self.commit(target_token, "target", gaps[len(accepted)])

    def written(self) -> Written:
        """What was committed since the last call."""
        written = Written(
            tuple(self.step_pieces), tuple(self.step_tokens), tuple(self.step_sources), self.reply_tokens,
            tuple(self.step_gaps),
        )  # fmt: skip
        self.step_pieces.clear()
        self.step_tokens.clear()
        self.step_sources.clear()
        self.step_gaps.clear()
        return written

    # --- the target ---------------------------------------------------------------------

    def verify(self, draft: Draft, judge: Judge) -> tuple[int, int, np.ndarray, float]:
        """The one place drafts are verified and the target's KV cache rolled back, for every
        mode: the target evaluates the committed tokens it has not read (the last one) and the
        draft in one batch, ``judge`` decides how many drafted tokens pass and which token follows
        them, and the cache is cut back to the committed text and the accepted tokens.

        Returns (accepted, next token, the rows' logits from the last committed token on, seconds);
        the timing feeds the cost model when the batch is the usual one (the last committed token
        and the draft)."""
        committed = len(self.history)
        unread = self.history[len(self.target.tokens) :]
        batch = unread + draft.tokens
        first_row = len(unread) - 1
        started = time.perf_counter()
        logits = self.target.evaluate(batch, list(range(first_row, len(batch))))
        seconds = time.perf_counter() - started
        if len(unread) == 1:
            self.cost_model.observe_verify(len(batch), seconds)
        self.spent_seconds += seconds
        self.target_calls += 1
        accepted, next_token = judge(draft, logits)
        self.target.truncate(committed + accepted)
        self.drafted += len(draft.tokens)
        self.accepted += accepted
        return accepted, next_token, logits, seconds

    def keep_prompt_prefix(self) -> None:
        """Cut the target's KV cache back to what it shares with the prompt, minus at least the
        prompt's last token (whose logits the next evaluation must produce), and minus the token
        before a span whose reading is to be kept when the span is not all in the cache (that
        token's row predicts the span's first)."""
        keep_to = min(self.target.common_prefix_length(self.prompt), len(self.prompt) - 1)
        keep = self.keep_reading
        if keep is not None and keep_to < keep.end and self._keeps(keep.start - 1):
            keep_to = min(keep_to, keep.start - 1)
        self.target.truncate(keep_to)

    def _keeps(self, cached: int) -> bool:
        """Whether the span asked for is kept when the cache holds the prompt's first ``cached``
        tokens: the row before the span is still to be read, and a prompt token still to be read
        follows it (exact mode reads the whole prompt, fast mode all but its last token)."""
        keep = self.keep_reading
        unread_end = len(self.prompt) - (1 if self.settings.mode == "fast" else 0)
        return keep is not None and 0 <= cached < keep.start < keep.end < unread_end

    def read_prompt(self, tokens: list[int]) -> np.ndarray | None:
        """The target reads ``tokens`` of the prompt (what follows its KV cache) in pieces, keeping
        the reading asked for on the way; None when cancelled meanwhile."""
        self.prompt_read_tokens += len(tokens)
        keep, offset = self.keep_reading, len(self.target.tokens)
        if keep is None or not self._keeps(offset):
            return self._read_pieces(tokens, 0, len(tokens))
        # The row before the span predicts its first token. The few tokens before it (the
        # template's) and after it (closing the turn, opening the reply) go in the same batches:
        # on a 2-core AVX2 host a 4-token evaluation of their own costs 2.6 single steps.
        lead = keep.start - 1 - offset
        if lead > SHORT_LEAD:
            if self._read_pieces(tokens[:lead], 0, len(tokens)) is None:
                return None
        else:
            lead = 0
        span = range(keep.start - 1 - offset - lead, keep.end - 1 - offset - lead)
        report = self.on_prompt_progress
        read = read_in_context(
            self.target.plain, tokens[lead:], span, should_stop=self.should_cancel,
            on_progress=None if report is None else lambda done: report(lead + done, len(tokens)),
        )  # fmt: skip
        if read is None:
            return None
        keep.receive(read.reading)
        if self.on_prompt_progress is not None:
            self.on_prompt_progress(len(tokens), len(tokens))
        return self.target.personalised_logits(read.last_logits[None], read.last_hidden[None])[0]

    def _read_pieces(self, tokens: list[int], done: int, total: int) -> np.ndarray | None:
        """``evaluate_prompt``, its progress counted among ``total`` tokens of which ``done`` are read."""
        report = self.on_prompt_progress
        return self.target.evaluate_prompt(
            tokens, should_stop=self.should_cancel,
            on_progress=None if report is None else lambda read, _: report(done + read, total),
        )  # fmt: skip

    # --- the loop ----------------------------------------------------------------------

    def execute(self) -> Iterator[Written | ReplyStats]:
        started = time.perf_counter()
        for drafter in self.decoder.drafters.values():
            drafter.begin(self.prompt, self.prediction, self.earlier)
        record_gaps = self.settings.record_top_two_gaps
        steps: Iterator[None]
        if self.settings.mode == "fast":
            steps = self.fast_steps()
        else:
            self.keep_prompt_prefix()
            logits = self.read_prompt(self.prompt[len(self.target.tokens) :])
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
            written = self.written()
            if written.token_ids or written.pieces:
                yield written
            if self.finish_reason is not None:
                break
        tail = self.text.flush()
        if tail:
            yield Written((TextPiece(tail, self.last_source),), (), (), self.reply_tokens)
        finished = time.perf_counter()
        first_token_at = first_token_at or finished
        tokens = self.reply_tokens
        decode_seconds = finished - first_token_at
        yield ReplyStats(
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
            prompt_read_tokens=self.prompt_read_tokens,
            prediction_accepted=self.prediction_accepted,
            prediction_rejected=self.prediction_rejected,
        )

    def drafter_label(self) -> str:
        if self.settings.mode == "target":
            return "none"
        if self.settings.mode == "fast":
            return "model"
        if self.settings.drafter == "auto":
            used = "+".join(sorted(self.drafters_used)) or "none"
            return f"auto({used})"
        return self.settings.drafter

    def trace(self, drafter: Drafter | None, draft: Draft, accepted: int, next_token: int, seconds: float) -> None:
        if self.on_step is not None:
            self.on_step(StepTrace(
                drafter.name if drafter else None, draft.key, tuple(draft.tokens), accepted, next_token,
                draft.seconds, seconds,
            ))  # fmt: skip

    # --- exact mode (and the target alone) ------------------------------------------------

    def exact_steps(self, first: int, first_gap: float | None) -> Iterator[None]:
        """Exact (and target-only) decoding; yields after each step's tokens are committed."""
        if not self.commit(first, "target", first_gap):
            yield
            return
        yield
        record_gaps = self.settings.record_top_two_gaps
        while True:
            draft, drafter = self.propose()
            accepted, next_token, logits, seconds = self.verify(draft, self.judge_exactly)
            if drafter is not None and draft.tokens:
                drafter.accept(draft, accepted)
                self.drafters_used.add(drafter.name)
                self.cost_model.observe_acceptance(draft.key, len(draft.tokens), accepted)
            self.mid_copy = bool(draft.tokens) and accepted == len(draft.tokens)
            self.trace(drafter, draft, accepted, next_token, seconds)
            gaps = [top_two_gap(logits[row]) if record_gaps else None for row in range(accepted + 1)]
            source: Source = drafter.name if drafter is not None else "target"
            before = self.reply_tokens
            still_going = self.commit_step(draft.tokens[:accepted], source, next_token, gaps)
            if draft.from_prediction:  # counted as written: none past a stop string or the token limit
                self.prediction_accepted += min(accepted, self.reply_tokens - before)
                self.prediction_rejected += len(draft.tokens) - accepted
            yield
            if not still_going:
                return

    def judge_exactly(self, draft: Draft, logits: np.ndarray) -> tuple[int, int]:
        """(how many drafted tokens are accepted, the token that follows them): the target's own
        choices, greedy or by speculative sampling, so the output is the target's."""
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

    def propose(self) -> tuple[Draft, Drafter | None]:
        """This step's draft and its drafter: of the drafters the settings allow, the one whose
        draft the cost model expects to pay best (each is asked in the registry's order and must
        beat the one before), with the length it expects to pay best; none may be best."""
        settings = self.settings
        drafters = drafters_for(settings.drafter, self.decoder.drafters) if settings.mode != "target" else []
        remaining = settings.max_tokens - self.reply_tokens
        limit = min(settings.max_draft_tokens, remaining - 1, self.target.context_length - len(self.history) - 2)
        if not drafters or limit <= 0:
            return Draft(), None
        request = DraftRequest(self.history, limit, self.sampling, self.rng, should_stop=self.should_cancel)
        if settings.fixed_draft_length is not None:
            drafter = next((d for d in drafters if d.name == "model"), drafters[0])
            length = min(limit, settings.fixed_draft_length)
            return (drafter.draft(replace(request, max_tokens=length)), drafter) if length > 0 else (Draft(), None)
        plan = step_plan(
            self.cost_model, limit, reply_tokens=self.reply_tokens, spent_seconds=self.spent_seconds,
            mid_copy=self.mid_copy,
        )  # fmt: skip
        if plan is None:
            return Draft(), None
        best: tuple[Draft, Drafter | None] = (Draft(), None)
        for drafter in drafters:
            required = max(plan.required_rate, best[0].expected_rate)
            draft = drafter.draft(replace(request, plan=replace(plan, required_rate=required)))
            self.count_drafting(drafter, draft)
            if draft.tokens:
                best = (draft, drafter)
        return best

    def count_drafting(self, drafter: Drafter, draft: Draft) -> None:
        """Drafting time counts against this reply's loss budget, and a draft's time per token
        teaches the cost model (a draft stopped while reading the prompt measured nothing)."""
        self.spent_seconds += draft.seconds
        if draft.tokens and draft.seconds > 0:
            self.cost_model.observe_draft(drafter.name, len(draft.tokens), draft.seconds)

    # --- fast mode (BiLD) ----------------------------------------------------------------

    def fast_steps(self) -> Iterator[None]:
        settings = self.settings
        drafter = self.decoder.drafters["model"]
        # The target reads the prompt now (all but its last token, whose logits a check will need),
        # so that its later checks only evaluate new tokens.
        self.keep_prompt_prefix()
        unread = self.prompt[len(self.target.tokens) : -1]
        if unread and self.read_prompt(unread) is None:
            self.finish_reason = "cancelled"
            return
        self.target_calls += 1
        run_limit = settings.max_draft_run if settings.max_draft_run > 0 else math.inf
        while True:
            remaining = settings.max_tokens - self.reply_tokens
            request = DraftRequest(
                self.history, int(min(run_limit, remaining)), self.sampling, self.rng,
                min_confidence=settings.fallback_threshold, should_stop=self.should_cancel,
            )  # fmt: skip
            draft = drafter.draft(request)
            self.count_drafting(drafter, draft)
            reached_end = len(draft.tokens) >= remaining or (
                draft.tokens and self.target.is_end_of_generation(draft.tokens[-1])
            )
            if reached_end and math.isinf(settings.rollback_threshold) and math.isinf(run_limit):
                # Nobody would check these tokens: the small model's run is the reply.
                self.drafted += len(draft.tokens)
                self.accepted += len(draft.tokens)
                drafter.accept(draft, len(draft.tokens))
                for token in draft.tokens:
                    if not self.commit(token, "model"):
                        break
                yield
                return
            # Fallback: the target checks the run in one pass and writes the next token itself.
            accepted, next_token, _, seconds = self.verify(draft, self.judge_by_rollback)
            drafter.accept(draft, accepted)
            self.trace(drafter, draft, accepted, next_token, seconds)
            still_going = self.commit_step(draft.tokens[:accepted], "model", next_token, [None] * (accepted + 1))
            yield
            if not still_going:
                return

    def judge_by_rollback(self, draft: Draft, logits: np.ndarray) -> tuple[int, int]:
        """BiLD's rule: keep the draft up to the first token whose cross-entropy under the target
        exceeds the rollback threshold; the target's own choice follows."""
        accepted = len(draft.tokens)
        for index, token in enumerate(draft.tokens):
            log_probabilities = logits[index] - _log_sum_exp(logits[index])
            if -float(log_probabilities[token]) > self.settings.rollback_threshold:
                accepted = index
                break
        return accepted, choose(logits[accepted], self.sampling, self.rng)


def _log_sum_exp(values: np.ndarray) -> float:
    peak = float(values.max())
    return peak + math.log(float(np.exp(values - peak, dtype=np.float64).sum()))
