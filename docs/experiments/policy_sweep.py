"""Drafting-policy variants replayed side by side (docs/experiments/replay_policy.py): each variant
changes engine constants in-process, then every prompt is replayed on this host's batch costs, on
costs with every batch 0.6x as dear (a host where batching pays more, as with AVX-512), and with a
fresh cost model per reply (as `duetto ask` runs). An experiment; the notebook has its results.

Usage: python docs/experiments/policy_sweep.py TARGET.gguf REFERENCES.json COSTS.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import replay_policy  # noqa: E402

from duetto.engine import cost_model, draft_policy  # noqa: E402
from duetto.engine.cost_model import AcceptanceKey  # noqa: E402

SHIPPED_PRIORS = dict(cost_model.PRIOR_ACCEPTANCE_BY_KEY)
# Over every position of the 20 reference replies (public and development prompts): how often a
# short match's first drafted token is the target's.
MEASURED_SHORT_PRIORS = {
    AcceptanceKey("lookup", "tokens", 1, False): 0.15,
    AcceptanceKey("lookup", "tokens", 1, True): 0.24,
    AcceptanceKey("lookup", "tokens", 2, False): 0.43,
    AcceptanceKey("lookup", "tokens", 2, True): 0.57,
    AcceptanceKey("lookup", "tokens", 4, False): 0.76,
    AcceptanceKey("lookup", "tokens", 4, True): 0.83,
}


def shipped() -> None:
    pass


def no_exploration() -> None:
    cost_model.EXPLORATION = 0.0


def measured_short_priors() -> None:
    cost_model.PRIOR_ACCEPTANCE_BY_KEY = {**SHIPPED_PRIORS, **MEASURED_SHORT_PRIORS}


def measured_short_priors_no_exploration() -> None:
    measured_short_priors()
    no_exploration()


def small_mid_copy_allowance() -> None:
    draft_policy.LOSS_ALLOWANCE_TOKENS_MID_COPY = 4.0


def small_budget() -> None:
    draft_policy.LOSS_ALLOWANCE_TOKENS = 2.0
    draft_policy.LOSS_ALLOWANCE_TOKENS_MID_COPY = 4.0
    draft_policy.LOSS_ALLOWANCE_SHARE = 0.02


VARIANTS = [shipped, no_exploration, measured_short_priors, measured_short_priors_no_exploration,
            small_mid_copy_allowance, small_budget]  # fmt: skip
DEFAULTS = {
    (cost_model, "EXPLORATION"): cost_model.EXPLORATION,
    (cost_model, "PRIOR_ACCEPTANCE_BY_KEY"): SHIPPED_PRIORS,
    (draft_policy, "LOSS_ALLOWANCE_TOKENS"): draft_policy.LOSS_ALLOWANCE_TOKENS,
    (draft_policy, "LOSS_ALLOWANCE_TOKENS_MID_COPY"): draft_policy.LOSS_ALLOWANCE_TOKENS_MID_COPY,
    (draft_policy, "LOSS_ALLOWANCE_SHARE"): draft_policy.LOSS_ALLOWANCE_SHARE,
}


def summary(speedups: dict[str, float], kinds: dict[str, str]) -> str:
    def geomean(values: list[float]) -> float:
        return math.exp(sum(map(math.log, values)) / len(values))

    by_kind: dict[str, list[float]] = {}
    for prompt, value in speedups.items():
        by_kind.setdefault(kinds[prompt], []).append(value)
    parts = [f"{kind} {geomean(values):.3f}/{min(values):.3f}" for kind, values in sorted(by_kind.items())]
    lowest = min(speedups, key=speedups.get)
    return " ".join(parts) + f" | all {geomean(list(speedups.values())):.3f}, lowest {lowest} {speedups[lowest]:.3f}"


def main() -> None:
    target, references, costs = (Path(argument) for argument in sys.argv[1:4])
    kinds = {entry["id"]: entry["kind"] for entry in json.loads(references.read_text())}
    print("each cell: geometric mean / lowest prompt, medians of 3 repeats")
    for variant in VARIANTS:
        for (module, name), value in DEFAULTS.items():
            setattr(module, name, value)
        variant()
        for label, scale, cold in (("this host", 1.0, False), ("batches 0.6x", 0.6, False), ("cold", 1.0, True)):
            speedups = replay_policy.replay(target, references, costs, 3, cold, scale, [], quiet=True)
            print(f"{variant.__name__:40} {label:13} {summary(speedups, kinds)}", flush=True)


if __name__ == "__main__":
    main()
