"""The online cost model that picks each step's draft length, zero included.

A step drafts k tokens and verifies them with one target evaluation of k + 1
tokens. With a per-token acceptance rate a (the chance a drafted token is
accepted given that the ones before it were), the step yields on average
1 + a + a^2 + ... + a^k tokens and costs k * draft_cost + verify(k + 1). The
best k maximizes tokens per second; k = 0 is plain target decoding, so a drafter
that does not pay is simply not used and exact mode never runs meaningfully
slower than the target alone.

Everything is measured while decoding: the target's evaluation time for each batch
size, each drafter's time per drafted token, and acceptance rates per drafter (and
for lookup, per match length, which predicts acceptance well).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SMOOTHING = 0.15  # weight of a new observation in the running averages of costs
# Acceptance is observed once per drafted token and comes in bursts (a quote runs for 30 tokens,
# then one inserted comma): a memory of ~25 tokens, so one rejection does not outweigh a long run.
ACCEPTANCE_SMOOTHING = 0.04
PRIOR_ACCEPTANCE = 0.5


MatchKind = Literal["tokens", "text"]


@dataclass(frozen=True)
class AcceptanceKey:
    """Which acceptance statistics a draft counts toward: its drafter, and for lookup what backs the
    match (how long it is, in tokens or characters of text, and whether it occurs once)."""

    drafter: str
    match: MatchKind | Literal[""] = ""
    """Lookup only: "tokens" (an n-gram match, in the prompt and reply or in the caller's
    prediction) or "text" (the prompt's text, engine/text_lookup.py)."""
    bucket: int = 0
    """Lookup only: the match length's bucket (the largest bucket not above the length)."""
    unique: bool = False
    """Lookup only: whether the matched tokens or text occur once before."""

    def __str__(self) -> str:
        if not self.match:
            return self.drafter
        kind = "text" if self.match == "text" else ""
        return f"{self.drafter}:{kind}{self.bucket}:{'unique' if self.unique else 'ambiguous'}"


def _lookup(match: MatchKind, bucket: int, unique: bool) -> AcceptanceKey:
    return AcceptanceKey("lookup", match, bucket, unique)


# Lookup drafts that continue a long match are usually copied text and accepted whole; short matches
# are guesses. Priors per match-length bucket (engine/lookup_drafter.py).
PRIOR_ACCEPTANCE_BY_KEY = {
    _lookup("tokens", 1, False): 0.2,
    _lookup("tokens", 2, False): 0.4,
    _lookup("tokens", 4, False): 0.7,
    _lookup("tokens", 8, False): 0.85,
    _lookup("tokens", 16, False): 0.95,
    _lookup("tokens", 1, True): 0.8,
    _lookup("tokens", 2, True): 0.85,
    _lookup("tokens", 4, True): 0.9,
    _lookup("tokens", 8, True): 0.95,
    _lookup("tokens", 16, True): 0.97,
    # Text matches (characters matched): a dozen characters of a sentence found once in the prompt
    # is usually a quote.
    _lookup("text", 12, False): 0.6,
    _lookup("text", 48, False): 0.85,
    _lookup("text", 12, True): 0.85,
    _lookup("text", 48, True): 0.95,
}
EXPLORATION = 0.3  # optimism for rarely tried drafters: + EXPLORATION / sqrt(observations + 1)
# Before anything is measured: the cost of evaluating n tokens in one batch relative to one token,
# as measured for Qwen2.5-Coder-1.5B Q4_K_M on a 2-core x86 CPU (all rows' logits requested).
# On a CPU, batching barely helps below ~16 tokens; on a GPU it is nearly free. Measurements made
# while decoding replace these numbers within a few steps.
PRIOR_RELATIVE_BATCH_COST = {1: 1.0, 2: 1.7, 4: 2.9, 8: 6.9, 16: 7.8, 24: 11.8, 32: 13.5, 48: 18.8, 64: 25.8}
PRIOR_WEIGHT = 8  # the prior acceptance counts as this many observations
RELAXATION_STEPS = 48  # an unused drafter's acceptance drifts back to the prior over about this many steps


@dataclass
class RunningAverage:
    value: float
    observations: int = 0
    smoothing: float = SMOOTHING

    def add(self, observation: float) -> None:
        weight = max(self.smoothing, 1.0 / (self.observations + 1))
        self.value += weight * (observation - self.value)
        self.observations += 1


def expected_tokens(acceptance: float, draft_length: int) -> float:
    """Tokens a step yields on average: the accepted prefix plus the target's own token."""
    total, run = 1.0, 1.0
    for _ in range(draft_length):
        run *= acceptance
        total += run
    return total


def _prior_acceptance(key: AcceptanceKey) -> float:
    return PRIOR_ACCEPTANCE_BY_KEY.get(key, PRIOR_ACCEPTANCE)


def _interpolate(points: dict[int, float], x: int) -> float:
    """Piecewise-linear through ``points``, extended linearly past the last two."""
    keys = sorted(points)
    if x in points:
        return points[x]
    if x < keys[0]:
        return points[keys[0]] * x / keys[0]
    for low, high in zip(keys, keys[1:], strict=False):
        if low < x < high:
            return points[low] + (points[high] - points[low]) * (x - low) / (high - low)
    low, high = keys[-2], keys[-1]
    return points[high] + (points[high] - points[low]) * (x - high) / (high - low)


@dataclass
class CostModel:
    verify_seconds: dict[int, RunningAverage] = field(default_factory=dict)
    draft_seconds_per_token: dict[str, RunningAverage] = field(default_factory=dict)
    acceptance: dict[AcceptanceKey, RunningAverage] = field(default_factory=dict)
    _verify_costs: dict[int, float] = field(default_factory=dict, repr=False)
    """``verify_cost``'s answers since the last measurement: a step's plan asks for each batch
    size several times, and the answers change only when a verification is measured."""

    # --- observations -----------------------------------------------------------------

    def observe_verify(self, batch_size: int, seconds: float) -> None:
        self.verify_seconds.setdefault(batch_size, RunningAverage(seconds, 0)).add(seconds)
        self._verify_costs.clear()

    def observe_draft(self, drafter: str, tokens: int, seconds: float) -> None:
        if tokens:
            per_token = seconds / tokens
            self.draft_seconds_per_token.setdefault(drafter, RunningAverage(per_token, 0)).add(per_token)

    def observe_acceptance(self, key: AcceptanceKey, drafted: int, accepted: int) -> None:
        """``accepted`` of ``drafted`` tokens passed, in order; each is an observation of the rate."""
        average = self.acceptance.setdefault(
            key, RunningAverage(_prior_acceptance(key), PRIOR_WEIGHT, ACCEPTANCE_SMOOTHING)
        )
        for index in range(drafted):
            average.add(1.0 if index < accepted else 0.0)
            if index >= accepted:
                break  # tokens after the first rejection say nothing about the conditional rate

    def relax(self, key: AcceptanceKey) -> None:
        """Drift an unused key's acceptance back toward the prior, so it gets tried again one day."""
        average = self.acceptance.get(key)
        if average is not None:
            average.value += (_prior_acceptance(key) - average.value) / RELAXATION_STEPS

    # --- estimates --------------------------------------------------------------------

    def acceptance_rate(self, key: AcceptanceKey) -> float:
        """The running acceptance rate, optimistic while there are few observations (so that a
        drafter gets tried at all), and never quite 1."""
        average = self.acceptance.get(key) or RunningAverage(_prior_acceptance(key), PRIOR_WEIGHT)
        bonus = EXPLORATION / (average.observations + 1) ** 0.5
        return min(0.99, average.value + bonus)

    def verify_cost(self, batch_size: int) -> float:
        """Seconds for one target evaluation of ``batch_size`` tokens: measured, else interpolated.

        Sizes not measured yet are read off the prior curve, scaled to the nearest measured size.
        """
        cost = self._verify_costs.get(batch_size)
        if cost is None:
            cost = self._verify_costs[batch_size] = self._estimate_verify_cost(batch_size)
        return cost

    def _estimate_verify_cost(self, batch_size: int) -> float:
        if batch_size in self.verify_seconds:
            return self.verify_seconds[batch_size].value
        prior = _interpolate(PRIOR_RELATIVE_BATCH_COST, batch_size)
        if not self.verify_seconds:
            return prior  # in units of one token's cost until something is measured
        sizes = sorted(self.verify_seconds)
        below = [size for size in sizes if size < batch_size]
        above = [size for size in sizes if size > batch_size]
        if below and above and above[0] - below[-1] <= 8:
            measured = {size: self.verify_seconds[size].value for size in (below[-1], above[0])}
            return _interpolate(measured, batch_size)
        nearest = min(sizes, key=lambda size: abs(size - batch_size))
        return self.verify_seconds[nearest].value * prior / _interpolate(PRIOR_RELATIVE_BATCH_COST, nearest)

    def draft_cost(self, drafter: str) -> float:
        average = self.draft_seconds_per_token.get(drafter)
        if average is not None:
            return average.value
        return 0.0 if drafter == "lookup" else 0.5 * self.verify_cost(1)

    def step_rate(self, acceptance: float, draft_length: int, draft_cost: float) -> float:
        """Expected tokens per second of a step drafting ``draft_length`` tokens."""
        seconds = draft_length * draft_cost + self.verify_cost(draft_length + 1)
        return expected_tokens(acceptance, draft_length) / seconds if seconds > 0 else 0.0

    def best_length(self, acceptance: float, max_length: int, draft_cost: float) -> tuple[int, float]:
        """(draft length, expected tokens per second) maximizing throughput; length 0 included."""
        best = (0, self.step_rate(acceptance, 0, draft_cost))
        for length in range(1, max_length + 1):
            rate = self.step_rate(acceptance, length, draft_cost)
            if rate > best[1]:
                best = (length, rate)
        return best

    def worth_extending(self, probability_all_accepted: float, drafter: str, current_length: int) -> bool:
        """Whether drafting one more token pays, given the chance that every token so far is accepted.

        The extra token is worth one target step (verify_cost(1)) if it and all
        before it are accepted, and costs a draft step plus a wider verification.
        """
        gain = probability_all_accepted * self.verify_cost(1)
        cost = self.draft_cost(drafter) + self.verify_cost(current_length + 2) - self.verify_cost(current_length + 1)
        return gain > cost
