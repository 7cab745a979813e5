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

from duetto.app.bench.ceiling import FILLER, batch_costs, copyable_lengths
from duetto.engine.model_session import ModelSession

MAX_TOKENS = 200
MAX_BATCH = 64
CONTEXT = 400


def filled_context(session: ModelSession) -> list[int]:
    """Fill the KV cache with CONTEXT tokens of code; returns them and the tokens that follow."""
    filler = session.tokenize(FILLER)
    session.truncate(0)
    session.evaluate(filler[:CONTEXT], [CONTEXT - 1])
    return filler


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
    costs = batch_costs(target, rounds=5)  # the ceiling duetto bench --ceiling measures, timed alike
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
