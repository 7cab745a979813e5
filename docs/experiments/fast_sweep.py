"""Sweep fast mode's three settings (fallback, rollback, run length) on a prompt set, to choose
its defaults by measurement: speed against the target alone, token agreement with the target's
greedy reply, and the task checks of `duetto bench`.

One process: per prompt the target alone runs twice (before and after the fast settings), and
each setting's time is compared with the mean of the two, so the machine's drift hits all alike.
Ratios are over the summed decoding times of all prompts (single short replies are too noisy to rank
settings by).

Usage: python docs/experiments/fast_sweep.py TARGET.gguf DRAFT.gguf PROMPTS.jsonl CHECKS.jsonl
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from duetto.app.bench.bench import first_difference, run_once
from duetto.app.bench.checks import failed_checks, read_checks_file
from duetto.app.core.models import build_decoder
from duetto.engine.decoder import DecodeSettings

FALLBACKS = (0.4, 0.6, 0.8)
ROLLBACKS = (1.0, 2.0, 5.0)
RUNS = (10, 24)
MAX_TOKENS = 200


def main() -> None:
    decoder = build_decoder(Path(sys.argv[1]), Path(sys.argv[2]), context_length=4096, threads=2)
    entries = [json.loads(line) for line in Path(sys.argv[3]).read_text().splitlines() if line.strip()]
    checks = read_checks_file(Path(sys.argv[4]))
    settings_grid = list(itertools.product(FALLBACKS, ROLLBACKS, RUNS))
    totals = {key: {"seconds": 0.0, "target_seconds": 0.0, "agreement": 0.0, "correct": 0} for key in settings_grid}
    target_correct = 0
    run_once(decoder, decoder.target.chat_prompt_tokens([{"role": "user", "content": "Say hello."}]),
             DecodeSettings(mode="target", max_tokens=16))  # fmt: skip
    for entry in entries:
        prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        target = DecodeSettings(mode="target", max_tokens=MAX_TOKENS)
        reply = run_once(decoder, prompt, target)
        text, before, reference = reply.text, reply.stats, reply.token_ids
        target_correct += not failed_checks(text, checks.get(entry["id"], {}))
        results = {}
        for fallback, rollback, run in settings_grid:
            settings = DecodeSettings(
                mode="fast", max_tokens=MAX_TOKENS, fallback_threshold=fallback,
                rollback_threshold=rollback, max_draft_run=run,
            )  # fmt: skip
            reply = run_once(decoder, prompt, settings)
            text, stats = reply.text, reply.stats
            divergence = first_difference(reference, reply.token_ids)
            agreement = (len(reference) if divergence is None else divergence) / len(reference)
            correct = not failed_checks(text, checks.get(entry["id"], {}))
            results[(fallback, rollback, run)] = (stats, agreement, correct)
        after = run_once(decoder, prompt, target).stats
        # Decoding rates after the first token, as `duetto bench` compares them.
        target_seconds_per_token = (1 / before.tokens_per_second + 1 / after.tokens_per_second) / 2
        for key, (stats, agreement, correct) in results.items():
            totals[key]["seconds"] += stats.tokens / stats.tokens_per_second
            totals[key]["target_seconds"] += target_seconds_per_token * stats.tokens
            totals[key]["agreement"] += agreement / len(entries)
            totals[key]["correct"] += correct
        print(entry["id"], file=sys.stderr, flush=True)
    rows = [
        {
            "fallback": fallback,
            "rollback": rollback,
            "max_run": run,
            "speedup": round(total["target_seconds"] / total["seconds"], 3),
            "mean_token_agreement": round(total["agreement"], 3),
            "correct": total["correct"],
            "target_correct": target_correct,
            "prompts": len(entries),
        }
        for (fallback, rollback, run), total in totals.items()
    ]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
