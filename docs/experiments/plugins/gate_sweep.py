"""Experiment (not part of duetto): plugin training settings against the benchmark's texts.

Reads the benchmark's texts (app/bench/plugin_texts) and duetto's generic text
(app/core/generic_text) once with the target, keeps the features in a cache file, then trains a
plugin per setting with ``fit_side_plugin`` and prints the perplexity change on the user's
held-out text, generic prose and generic code. Usage:

    .venv/bin/python docs/experiments/plugins/gate_sweep.py TARGET.gguf CACHE.npz [--threads 2]

Settings are ``TrainingSettings`` fields, edited in SWEEP below; the first row is the plugin
without a gate (no generic text), as duetto trained it before the gate.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from duetto.app.core.plugins import generic_texts
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin import TargetFingerprint
from duetto.engine.plugin_training import (
    Features,
    TrainingSettings,
    _split_generic,
    choose_vocabulary,
    collect_features,
    fit_side_plugin,
    log_likelihoods,
)

ROOT = Path(__file__).resolve().parents[3]
TEXTS = ROOT / "app" / "bench" / "plugin_texts"
SWEEP = [
    dict(generic_weight=0.0, gate_weight=0.0),  # replaced by the ungated run below
    dict(),
    dict(generic_weight=3.0),
    dict(gate_weight=1.0),
    dict(generic_weight=3.0, gate_weight=1.0),
]


def features_of(cache: Path, target: Path, threads: int) -> tuple[dict[str, Features], np.ndarray, TargetFingerprint]:
    names = ("train", "held_out", "generic_train", "generic_held_out", "prose", "code")
    if cache.exists():
        stored = np.load(cache)
        parts = {name: Features(*(stored[f"{name}.{field}"] for field in FIELDS)) for name in names}
        fingerprint = TargetFingerprint(str(stored["model"]), int(stored["vocabulary_size"]), int(stored["hidden"]))
        return parts, stored["vocabulary"], fingerprint
    settings = TrainingSettings()
    session = ModelSession(target, context_length=settings.window, threads=threads)
    tokens = session.tokenize((TEXTS / "diary-train.txt").read_text())
    split = int(len(tokens) * (1 - settings.held_out_share))
    vocabulary = choose_vocabulary(tokens[:split], settings.max_vocabulary)

    def read(part: list[int]) -> Features:
        started = time.perf_counter()
        features = collect_features(session, part, vocabulary, window=settings.window)
        print(f"read {len(part)} tokens in {time.perf_counter() - started:.1f} s", flush=True)
        return features

    generic = [_split_generic(read(session.tokenize(text)), 0.25) for text in generic_texts()]
    hidden, size = session.hidden_size, len(vocabulary)
    parts = {
        "train": read(tokens[:split]),
        "held_out": read(tokens[split - 1 :]),
        "generic_train": Features.concatenate([first for first, _ in generic], hidden, size),
        "generic_held_out": Features.concatenate([last for _, last in generic], hidden, size),
        "prose": read(session.tokenize((TEXTS / "generic-prose.txt").read_text())),
        "code": read(session.tokenize((TEXTS / "generic-code.txt").read_text())),
    }
    fingerprint = TargetFingerprint(session.path.name, session.vocabulary_size, hidden)
    session.close()
    arrays = {f"{name}.{field}": getattr(part, field) for name, part in parts.items() for field in FIELDS}
    np.savez(
        cache, **arrays, vocabulary=vocabulary, model=np.array(fingerprint.model_file),
        vocabulary_size=np.array(fingerprint.vocabulary_size), hidden=np.array(hidden),
    )  # fmt: skip
    return parts, vocabulary, fingerprint


FIELDS = ("hidden", "vocabulary_logits", "rest_log_sum", "next_logit", "next_index")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    parts, vocabulary, fingerprint = features_of(arguments.cache, arguments.target, arguments.threads)
    empty = parts["generic_train"].take(slice(0, 0))
    print("setting | user | prose | code | gate user/generic | epochs | seconds")
    for index, overrides in enumerate(SWEEP):
        settings = replace(TrainingSettings(), **overrides)
        ungated = index == 0
        started = time.perf_counter()
        plugin, report = fit_side_plugin(
            parts["train"],
            parts["held_out"],
            empty if ungated else parts["generic_train"],
            empty if ungated else parts["generic_held_out"],
            vocabulary,
            fingerprint,
            settings,
        )
        seconds = time.perf_counter() - started
        changes = []
        for name in ("held_out", "prose", "code"):
            base = -float(np.mean(log_likelihoods(parts[name])))
            personal = -float(np.mean(log_likelihoods(parts[name], plugin)))
            changes.append(f"{math.exp(personal - base) - 1:+.1%}")
        gates = f"{report.mean_gate_user:.3f}/{report.mean_gate_generic:.3f}"
        label = "no gate" if ungated else str(overrides or "defaults")
        print(f"{label} | {' | '.join(changes)} | {gates} | {report.best_epoch}/{report.epochs} | {seconds:.1f}")


if __name__ == "__main__":
    main()
