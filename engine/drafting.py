"""What every drafter is: the protocol, its draft, and the key its acceptance is counted under.

The shape follows llama.cpp's ``common/speculative.h``: a drafter is told the prompt once
(``begin``), asked for tokens continuing the committed text (``draft``), and told how many of
them the target accepted (``accept``); it keeps its own statistics. Verification and the
target's KV rollback are the decoder's (engine/decoder.py), the same for every drafter and mode.

A draft asked for with a ``DraftPlan`` is one the drafter judges worth verifying by the plan's
cost model, or none; without a plan the drafter writes up to the length asked (fast mode,
fixed-length experiments).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from duetto.engine.cost_model import AcceptanceKey, CostModel
from duetto.engine.sampling import SamplingSettings

Source = Literal["target", "model", "lookup"]
"""Who wrote a piece of a reply: the target itself, or the drafter whose tokens it accepted."""


@dataclass
class Draft:
    tokens: list[int] = field(default_factory=list)
    distributions: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)
    """For sampled verification: each token's draft distribution (token ids, probabilities); None
    when the proposal was deterministic."""
    key: AcceptanceKey | None = None
    """The acceptance statistics this draft belongs to; None for an empty draft."""
    expected_rate: float = 0.0
    """Tokens per second the plan's cost model expects of verifying it (0 without a plan)."""
    seconds: float = 0.0
    """Time spent drafting it."""
    from_prediction: bool = False
    """Copied from the caller's prediction (reported as accepted and rejected prediction tokens)."""


@dataclass(frozen=True)
class DraftPlan:
    """The decoder's judgement for this step, which a drafter drafts by: how long a draft may be,
    and what throughput it must promise to be worth a verification."""

    cost_model: CostModel
    start_limit: int
    """Most tokens for a draft that starts a match (these fail mostly at their first token)."""
    copy_limit: int
    """Most tokens for a draft that continues a long match (the reply is already copying)."""
    required_rate: float
    """Expected tokens per second a draft must beat: plain decoding's, with a margin."""

    def best_length(self, key: AcceptanceKey, available: int, drafter: str) -> tuple[int, float]:
        """(length, expected tokens per second) maximizing throughput for ``available`` tokens."""
        cost = self.cost_model
        return cost.best_length(cost.acceptance_rate(key), available, cost.draft_cost(drafter))


@dataclass(frozen=True)
class DraftRequest:
    history: list[int]
    """The committed text: the prompt and the reply so far."""
    max_tokens: int
    sampling: SamplingSettings
    rng: np.random.Generator
    plan: DraftPlan | None = None
    min_confidence: float = 0.0
    """Stop before a token whose top probability is below this (fast mode's fallback)."""
    should_stop: Callable[[], bool] | None = None


@dataclass
class DrafterStats:
    """A drafter's own counts over its lifetime (llama.cpp prints the same per implementation)."""

    drafts: int = 0
    drafted: int = 0
    accepted: int = 0
    seconds: float = 0.0


class Drafter(Protocol):
    name: Source
    stats: DrafterStats

    def begin(self, prompt: list[int], prediction: Sequence[int] = (), earlier: Sequence[int] = ()) -> None:
        """A new reply to ``prompt`` starts: forget what belonged to the last one. ``prediction``
        is text the caller expects the reply to resemble (OpenAI's predicted outputs), tokenized;
        ``earlier`` the conversation's turns that are no longer in the prompt (folded into its
        memory), tokenized. A drafter may draft from either or ignore them."""

    def draft(self, request: DraftRequest) -> Draft:
        """Tokens continuing ``request.history`` (possibly none)."""

    def accept(self, draft: Draft, accepted: int) -> None:
        """The target accepted the first ``accepted`` tokens of ``draft``."""


def count_draft(stats: DrafterStats, draft: Draft, accepted: int) -> None:
    """The bookkeeping every drafter's ``accept`` shares."""
    if draft.tokens:
        stats.drafts += 1
        stats.drafted += len(draft.tokens)
        stats.accepted += accepted
    stats.seconds += draft.seconds
