"""How fast could exact mode be on this machine, with a drafter that is never wrong?

For each prompt: the target's own greedy reply (up to 200 tokens), then the fastest schedule of
verification batches that yields exactly that reply, under this machine's measured batch costs:

- lookup oracle: a draft at reply position i may be any run of the reply that also appears,
  whole, in the prompt or in the reply before i (what a lookup drafter could copy), and it is
  always accepted; every other token is one plain target step;
- model oracle: as well, any run of new tokens can come from the draft model, always accepted,
  at the draft model's measured cost per token plus the batch that verifies it.

No drafter does better than its oracle, so a prompt whose lookup-oracle speedup is below a
target cannot reach it by lookup drafting on this machine. Usage:

    python docs/experiments/copy_bound.py TARGET.gguf DRAFT.gguf PROMPTS.jsonl [--json]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from duetto.engine.model_session import ModelSession

MAX_TOKENS = 200
MAX_BATCH = 64
CONTEXT = 400


def filled_context(session: ModelSession) -> list[int]:
    """Fill the KV cache with CONTEXT tokens of code; returns them and the tokens that follow."""
    filler = session.tokenize("def merge_intervals(intervals):\n    intervals = sorted(intervals)\n" * 60)
    session.truncate(0)
    session.evaluate(filler[:CONTEXT], [CONTEXT - 1])
    return filler


def batch_costs(session: ModelSession, rounds: int = 5) -> list[float]:
    """Seconds to verify a batch of n tokens (logits on every row), n = 1..MAX_BATCH, at CONTEXT.

    Every ratio is taken against the plain step (n = 1), so it gets more samples, back to back as
    the target alone takes them (step_cost). It varies most from run to run (37-50 ms seen here):
    one token reads every weight, so it waits on memory bandwidth, which this VM shares; batches
    wait on compute. Batches are timed round-robin, every size once per round, so that the
    machine's drift hits all sizes alike; the median over rounds is kept."""
    filler = filled_context(session)
    times: dict[int, list[float]] = {size: [] for size in range(2, MAX_BATCH + 1)}
    for _ in range(rounds):
        for size in times:
            session.truncate(CONTEXT)
            started = time.perf_counter()
            session.evaluate(filler[CONTEXT : CONTEXT + size], list(range(size)))
            times[size].append(time.perf_counter() - started)
    session.truncate(0)
    plain_step = step_cost(session)  # after the batches, as in every run in docs/experiments/NOTEBOOK.md but run 8
    return [0.0, plain_step] + [statistics.median(times[size]) for size in range(2, MAX_BATCH + 1)]


def step_cost(session: ModelSession, repeats: int = 21) -> float:
    """Seconds for one single-token step of this model at CONTEXT."""
    filler = filled_context(session)
    times = []
    for index in range(repeats):
        session.truncate(CONTEXT)
        started = time.perf_counter()
        session.evaluate([filler[CONTEXT + index]], [0])
        times.append(time.perf_counter() - started)
    session.truncate(0)
    return statistics.median(times)


def greedy_reply(session: ModelSession, prompt: list[int]) -> list[int]:
    session.truncate(0)
    logits = session.evaluate(prompt, [len(prompt) - 1])
    reply: list[int] = []
    while len(reply) < MAX_TOKENS:
        token = int(np.argmax(logits[-1]))
        reply.append(token)
        if session.is_end_of_generation(token):
            break
        logits = session.evaluate([token], [0])
    session.truncate(0)
    return reply


def copyable_lengths(prompt: list[int], reply: list[int]) -> list[int]:
    """For each reply position i: the longest run reply[i:i+L] found whole in prompt + reply[:i]."""
    lengths = []
    for i in range(len(reply)):
        known = prompt + reply[:i]
        best = 0
        longest_possible = len(reply) - i
        for start in range(len(known)):
            length = 0
            while length < min(longest_possible, len(known) - start) and known[start + length] == reply[i + length]:
                length += 1
            best = max(best, length)
        lengths.append(best)
    return lengths


def fastest_schedule(lengths: list[int], costs: list[float], draft_step: float | None) -> tuple[float, int]:
    """Least total time to produce the reply: each batch verifies d drafted tokens after the last
    accepted one (d + 1 rows) and yields d + 1 tokens. A lookup draft at i is at most lengths[i]
    long; with draft_step, any draft may come from the draft model at draft_step per token.
    Returns the time and how many of the reply's tokens the schedule drafted."""
    count = len(lengths)
    best = [math.inf] * (count + 1)
    drafted_after = [0] * (count + 1)
    best[count] = 0.0
    for i in range(count - 1, -1, -1):
        for drafted in range(0, min(MAX_BATCH - 1, count - 1 - i) + 1):
            by_lookup = drafted <= lengths[i]
            if not by_lookup and draft_step is None:
                break
            cost = costs[drafted + 1] + (0 if by_lookup else drafted * draft_step) + best[i + drafted + 1]
            if cost < best[i]:
                best[i] = cost
                drafted_after[i] = drafted + drafted_after[i + drafted + 1]
    return best[0], drafted_after[0]


def main() -> None:
    target = ModelSession(Path(sys.argv[1]), threads=2)
    draft = ModelSession(Path(sys.argv[2]), threads=2)
    entries = [json.loads(line) for line in Path(sys.argv[3]).read_text().splitlines() if line.strip()]
    costs = batch_costs(target)
    draft_step = step_cost(draft)
    rows = []
    for entry in entries:
        prompt = target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        reply = greedy_reply(target, prompt)
        lengths = copyable_lengths(prompt, reply)
        plain = len(reply) * costs[1]
        lookup_time, lookup_drafted = fastest_schedule(lengths, costs, None)
        model_time, model_drafted = fastest_schedule(lengths, costs, draft_step)
        rows.append(
            {
                "id": entry["id"],
                "kind": entry["kind"],
                "tokens": len(reply),
                "lookup_oracle_speedup": round(plain / lookup_time, 3),
                "lookup_oracle_drafted": lookup_drafted,
                "model_oracle_speedup": round(plain / model_time, 3),
                "model_oracle_drafted": model_drafted,
            }
        )
    summary = {}
    for column in ("lookup_oracle_speedup", "model_oracle_speedup"):
        by_kind = {}
        for kind in sorted({row["kind"] for row in rows}):
            values = [row[column] for row in rows if row["kind"] == kind]
            by_kind[kind] = round(statistics.geometric_mean(values), 3)
        by_kind["all"] = round(statistics.geometric_mean([row[column] for row in rows]), 3)
        summary[column] = by_kind
    report = {
        "target_step_ms": round(costs[1] * 1000, 1),
        "draft_step_ms": round(draft_step * 1000, 1),
        "batch_ms": {size: round(costs[size] * 1000, 1) for size in (2, 4, 8, 16, 24, 32, 48, 64)},
        "results": rows,
        "summary": summary,
    }
    if "--json" in sys.argv:
        print(json.dumps(report, indent=2))
        return
    print(f"target step {report['target_step_ms']} ms, draft step {report['draft_step_ms']} ms")
    print(f"batch ms: {report['batch_ms']}")
    for row in rows:
        print(
            f"{row['id']:28} {row['tokens']:4} tokens  lookup oracle {row['lookup_oracle_speedup']:.2f}x "
            f"({row['lookup_oracle_drafted']} drafted)  model oracle {row['model_oracle_speedup']:.2f}x "
            f"({row['model_oracle_drafted']} drafted)"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
