"""How long a draft may be, and what it must promise: the decoder's rules over the cost model.

The cost model (engine/cost_model.py) predicts what a draft of each length yields per second;
these rules bound the risk. A draft's worst case is that its first token is rejected: the
verification was then wasted. Each step's plan (``step_plan``) caps that loss to a budget, and
requires a draft to promise clearly more throughput than plain decoding.
"""

from __future__ import annotations

from duetto.engine.cost_model import CostModel
from duetto.engine.drafting import DraftPlan

# A draft must promise this much more throughput than plain decoding, and more again once drafting
# has cost time in this reply; chosen with a replay of the bench prompts against measured CPU
# verification costs (docs/BENCHMARKS.md), where a failed long draft costs as much as ten tokens.
REQUIRED_GAIN = 1.3
REQUIRED_GAIN_WHEN_BEHIND = 1.3
# A draft may risk losing (if its first token is rejected) at most this many plain tokens' time,
# plus a share of the reply so far, plus whatever drafting has saved in this reply: the bound on
# how much slower than the target alone exact mode can be. Drafts fail mostly at their first token,
# where a match starts (the reply restates a question, adds a comma, makes the edit); in the middle
# of a copy (a draft was just accepted whole, or the match is long) a draft may risk more.
LOSS_ALLOWANCE_TOKENS = 3.0
LOSS_ALLOWANCE_TOKENS_MID_COPY = 8.0
LOSS_ALLOWANCE_SHARE = 0.05


def affordable_draft_length(
    cost_model: CostModel, limit: int, *, reply_tokens: int, spent_seconds: float, mid_copy: bool
) -> int:
    """The longest draft (up to ``limit``) whose worst case, every drafted token rejected, stays
    within the reply's loss budget: a fixed allowance (larger ``mid_copy``: right after a draft was
    accepted whole, or for a draft continuing a long match), a share of the ``reply_tokens`` so
    far, and what drafting has saved against plain decoding (``spent_seconds`` is the time spent
    verifying and drafting). Long drafts pay only when accepted whole on a CPU, so this is what
    keeps a run of failed ones from making a reply much slower than the target alone."""
    one_token = cost_model.verify_cost(1)
    saved = reply_tokens * one_token - spent_seconds
    allowance = LOSS_ALLOWANCE_TOKENS_MID_COPY if mid_copy else LOSS_ALLOWANCE_TOKENS
    budget = (allowance + LOSS_ALLOWANCE_SHARE * reply_tokens) * one_token + saved

    def affordable(length: int) -> bool:
        return cost_model.verify_cost(length + 1) - one_token <= budget

    if limit <= 0 or not affordable(1):
        return 0
    # A binary search (this runs every step): a batch's cost grows with its size, and the length
    # found is affordable whatever the costs between, so the loss bound holds regardless.
    low, high = 1, limit
    while low < high:
        middle = (low + high + 1) // 2
        if affordable(middle):
            low = middle
        else:
            high = middle - 1
    return low


def step_plan(
    cost_model: CostModel, limit: int, *, reply_tokens: int, spent_seconds: float, mid_copy: bool
) -> DraftPlan | None:
    """This step's plan, or None when not even a draft continuing a copy is affordable."""

    def affordable(in_copy: bool) -> int:
        return affordable_draft_length(
            cost_model, limit, reply_tokens=reply_tokens, spent_seconds=spent_seconds, mid_copy=in_copy
        )

    copy_limit = affordable(True)
    if copy_limit <= 0:
        return None
    start_limit = copy_limit if mid_copy else affordable(False)
    one_token = cost_model.verify_cost(1)
    baseline = 1.0 / one_token if one_token > 0 else 0.0
    behind = spent_seconds > reply_tokens * one_token
    required = baseline * REQUIRED_GAIN * (REQUIRED_GAIN_WHEN_BEHIND if behind else 1.0)
    return DraftPlan(cost_model, start_limit=start_limit, copy_limit=copy_limit, required_rate=required)
