"""Experiment (not part of duetto): plugin training settings against the benchmark's texts.

Reads the benchmark's texts (app/bench/plugin_texts) and duetto's generic text
(app/core/generic_text) once with the target, keeps the features in a cache file, then trains a
plugin per setting with ``fit_side_plugin`` and prints the perplexity change on the user's
held-out text, generic prose and generic code. Usage:

    .venv/bin/python docs/experiments/plugins/gate_sweep.py TARGET.gguf CACHE_DIR [--threads 2]

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

from duetto.app.core.plugins import GENERIC_TEXTS, generic_texts
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
    dict(),  # trained without generic text: no gate
    dict(retained_gain=1.0),  # a gate as fitted, not made cautious
    dict(),
    dict(retained_gain=0.9),
    dict(retained_gain=0.75),
    dict(gate_caution=1.0),
    dict(gate_caution=16.0),
]


def features_of(cache: Path, target: Path, threads: int) -> tuple[dict[str, Features], np.ndarray, TargetFingerprint]:
    """Features of the user's text (split as training splits it), of each generic text duetto
    ships, and of the benchmark's generic prose and code; each read once into CACHE/NAME.npz."""
    settings = TrainingSettings()
    cache.mkdir(parents=True, exist_ok=True)
    session = None
    user_tokens = None

    def load() -> ModelSession:
        nonlocal session
        if session is None:
            session = ModelSession(target, context_length=settings.window, threads=threads)
        return session

    vocabulary_file = cache / "vocabulary.npz"
    if vocabulary_file.exists():
        stored = np.load(vocabulary_file)
        vocabulary = stored["vocabulary"]
        fingerprint = TargetFingerprint(str(stored["model"]), int(stored["vocabulary_size"]), int(stored["hidden"]))
    else:
        user_tokens = load().tokenize((TEXTS / "user-train.txt").read_text())
        split = int(len(user_tokens) * (1 - settings.held_out_share))
        vocabulary = choose_vocabulary(user_tokens[:split], settings.max_vocabulary)
        fingerprint = TargetFingerprint(load().path.name, load().vocabulary_size, load().hidden_size)
        np.savez(
            vocabulary_file, vocabulary=vocabulary, model=np.array(fingerprint.model_file),
            vocabulary_size=np.array(fingerprint.vocabulary_size), hidden=np.array(fingerprint.hidden_size),
        )  # fmt: skip

    def text_tokens(name: str) -> list[int]:
        if name in ("train", "held_out"):
            tokens = load().tokenize((TEXTS / "user-train.txt").read_text())
            split = int(len(tokens) * (1 - settings.held_out_share))
            return tokens[:split] if name == "train" else tokens[split - 1 :]
        if name in ("prose", "code"):
            return load().tokenize((TEXTS / f"generic-{name}.txt").read_text())
        index = GENERIC_TEXTS.index(name)
        return load().tokenize(generic_texts()[index])

    parts = {}
    for name in ("train", "held_out", "prose", "code", *GENERIC_TEXTS):
        path = cache / f"{name}.npz"
        if not path.exists():
            started = time.perf_counter()
            tokens = text_tokens(name)
            features = collect_features(load(), tokens, vocabulary, window=settings.window)
            print(f"read {name}: {len(tokens)} tokens in {time.perf_counter() - started:.1f} s", flush=True)
            np.savez(path, **{field: getattr(features, field) for field in FIELDS})
        stored = np.load(path)
        parts[name] = Features(*(stored[field] for field in FIELDS))
    if session is not None:
        session.close()
    hidden, size = fingerprint.hidden_size, len(vocabulary)
    generic = [_split_generic(parts[name], 0.25) for name in GENERIC_TEXTS]
    parts["generic_train"] = Features.concatenate([first for first, _ in generic], hidden, size)
    parts["generic_held_out"] = Features.concatenate([last for _, last in generic], hidden, size)
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
        gates = f"{report.mean_gate_user:.3f}/{report.mean_gate_generic:.3f} (shift {report.gate_shift})"
        label = "no gate" if ungated else str(overrides or "defaults")
        print(f"{label} | {' | '.join(changes)} | {gates} | {report.best_epoch}/{report.epochs} | {seconds:.1f}")


if __name__ == "__main__":
    main()
