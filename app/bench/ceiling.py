"""The lookup-oracle ceiling: how fast exact mode could be on this machine with a drafter that is
never wrong, measured in the run it judges (``duetto bench --ceiling``).

Given the target's own greedy reply, the oracle may draft at reply position i any run of the
reply that appears whole in the prompt or earlier in the reply (what a lookup drafter could copy),
of exactly the right length, and it is always accepted; every other token is one plain target
step. The fastest schedule of verification batches that yields the reply, under this machine's
batch costs measured in the same run, bounds every lookup drafter from above: no drafting policy
beats it. Its speedup is taken as ``duetto bench`` takes its own, over the decoding after the
first token (which the prompt's read yields).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

from duetto.engine.model_session import ModelSession

MAX_BATCH = 64  # the decoder drafts at most 64 tokens (engine/decoder.py MAX_DRAFT_TOKENS)
CONTEXT = 400  # tokens in the KV cache while batches are timed, about a bench prompt and reply
FILLER = "def merge_intervals(intervals):\n    intervals = sorted(intervals)\n" * 60


def time_batches(session: ModelSession, sizes: Sequence[int], rounds: int, context: int = CONTEXT) -> dict[int, float]:
    """Median seconds to verify a batch of each size (logits on every row) with ``context`` tokens
    in the KV cache. Sizes are timed round-robin, every size once per round, so that the machine's
    drift hits all alike; a size listed more than once gets more samples."""
    filler = session.tokenize(FILLER)
    session.truncate(0)
    session.evaluate(filler[:context], [context - 1])
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for index, size in enumerate(sizes):
            session.truncate(context)
            tokens = filler[context + index % 8 : context + index % 8 + size]
            started = time.perf_counter()
            session.evaluate(tokens, list(range(size)))
            times[size].append(time.perf_counter() - started)
    session.truncate(0)
    return {size: statistics.median(samples) for size, samples in times.items()}


def batch_costs(session: ModelSession, rounds: int = 3, max_batch: int = MAX_BATCH) -> list[float]:
    """Seconds to verify a batch of n tokens at CONTEXT, for n = 1..max_batch (index n; index 0
    unused).

    Every size is timed, not a few interpolated: on a CPU the cost by size has steps (a batch of 8
    can cost more than one of 6 and nearly as much as one of 12), and the oracle picks its batches by
    them. The plain step gets more samples."""
    medians = time_batches(session, [1] * 4 + list(range(1, max_batch + 1)), rounds)
    return [0.0] + [medians[size] for size in range(1, max_batch + 1)]


def copyable_lengths(prompt: Sequence[int], reply: Sequence[int]) -> list[int]:
    """For each reply position i: the longest run reply[i:i+L] found whole in prompt + reply[:i]."""
    lengths = []
    for i in range(len(reply)):
        known = list(prompt) + list(reply[:i])
        best = 0
        longest_possible = len(reply) - i
        for start in range(len(known)):
            if known[start] != reply[i]:
                continue
            length = 0
            while length < min(longest_possible, len(known) - start) and known[start + length] == reply[i + length]:
                length += 1
            best = max(best, length)
        lengths.append(best)
    return lengths


def fastest_schedule(lengths: Sequence[int], costs: Sequence[float]) -> tuple[float, int]:
    """Least total time to produce the reply: each batch verifies d drafted tokens after the last
    accepted one (d + 1 rows) and yields d + 1 tokens; a draft at i is at most lengths[i] long.
    Returns the time and how many of the reply's tokens the schedule drafted."""
    count = len(lengths)
    largest = len(costs) - 2
    best = [math.inf] * (count + 1)
    drafted_after = [0] * (count + 1)
    best[count] = 0.0
    for i in range(count - 1, -1, -1):
        for drafted in range(0, min(largest, lengths[i], count - 1 - i) + 1):
            cost = costs[drafted + 1] + best[i + drafted + 1]
            if cost < best[i]:
                best[i] = cost
                drafted_after[i] = drafted + drafted_after[i + drafted + 1]
    return best[0], drafted_after[0]


def lookup_ceiling(prompt: Sequence[int], reply: Sequence[int], costs: Sequence[float]) -> tuple[float, int]:
    """(the lookup oracle's speedup over the target alone, tokens it drafted) for this reply, over
    the steps after its first token, as ``duetto bench`` counts tokens per second."""
    if len(reply) < 2:
        return 1.0, 0
    lengths = copyable_lengths(list(prompt) + [reply[0]], reply[1:])
    oracle_seconds, drafted = fastest_schedule(lengths, costs)
    plain_seconds = (len(reply) - 1) * costs[1]
    return plain_seconds / oracle_seconds, drafted
