"""Two personalisations tried against the side plugin on the KJV texts (docs/PLUGINS.md).

Not part of duetto: the measurements behind the table "other designs, measured" in
docs/PLUGINS.md, kept so that they can be run again.

- ``knn``: a kNN-LM datastore of the user's text (keys: the target's final hidden states reduced
  by PCA; values: the token that followed), mixed with the target as
  ``lambda * p_knn + (1 - lambda) * p_target``; lambda is chosen on the training text's last tenth.
- ``prefix``: in-context personalisation, the last PREFIX tokens of the user's text read before
  every 512-token window of the held-out text.

Usage (after make_corpus.py; TARGET is the target GGUF)::

    python3 docs/experiments/plugins/other_plugins.py knn TARGET CORPUS_DIR
    python3 docs/experiments/plugins/other_plugins.py prefix TARGET CORPUS_DIR [PREFIX=1024] [WINDOWS=5]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_training import choose_vocabulary, collect_features, log_likelihoods

TEXTS = ("kjv-train", "kjv-heldout", "generic")


def knn(target: Path, corpus: Path) -> None:
    session = ModelSession(target, context_length=512, threads=2)
    tokens = {name: session.tokenize((corpus / f"{name}.txt").read_text(encoding="utf-8")) for name in TEXTS}
    vocabulary = choose_vocabulary(tokens["kjv-train"], 4096)
    features = {name: collect_features(session, tokens[name], vocabulary) for name in TEXTS}
    session.close()
    base = {name: log_likelihoods(features[name]) for name in TEXTS}
    following = {name: np.asarray(tokens[name][1:]) for name in TEXTS}
    split = int(len(base["kjv-train"]) * 0.9)
    keys_full = features["kjv-train"].hidden[:split]
    mean = keys_full.mean(axis=0)
    _, _, components = np.linalg.svd(keys_full - mean, full_matrices=False)
    queries = {
        "tail": (features["kjv-train"].hidden[split:], following["kjv-train"][split:], base["kjv-train"][split:]),
        "heldout": (features["kjv-heldout"].hidden, following["kjv-heldout"], base["kjv-heldout"]),
        "generic": (features["generic"].hidden, following["generic"], base["generic"]),
    }
    print({name: round(float(np.exp(-values[2].mean())), 3) for name, values in queries.items()}, "(base)")
    for dimensions in (64, 256):
        projection = components[:dimensions].T

        def project(hidden: np.ndarray, projection=projection) -> np.ndarray:
            return ((hidden - mean) @ projection).astype(np.float32)

        keys, values = project(keys_full), following["kjv-train"][:split]
        scale = float(np.median(((keys[:500, None] - keys[None, 500:1000]) ** 2).sum(-1)))
        for neighbours in (16, 64):
            for temperature in (0.02, 0.05, 0.1, 0.2):
                knn_p = {
                    name: _knn_probability(project(q), keys, values, nxt, neighbours, temperature * scale)
                    for name, (q, nxt, _) in queries.items()
                }
                weights = (0.1, 0.2, 0.3, 0.4, 0.5)
                tail = [_mixed_perplexity(queries["tail"][2], knn_p["tail"], weight) for weight in weights]
                weight = weights[int(np.argmin(tail))]
                result = {name: round(_mixed_perplexity(q[2], knn_p[name], weight), 3) for name, q in queries.items()}
                print(f"d={dimensions} k={neighbours} T={temperature} lambda={weight}", result, flush=True)


def _knn_probability(queries, keys, values, following, neighbours, temperature) -> np.ndarray:
    result = np.empty(len(queries))
    for start in range(0, len(queries), 1024):
        part = queries[start : start + 1024]
        distances = (part**2).sum(1)[:, None] - 2 * part @ keys.T + (keys**2).sum(1)[None]
        nearest = np.argpartition(distances, neighbours, axis=1)[:, :neighbours]
        near = np.take_along_axis(distances, nearest, 1)
        weights = np.exp(-(near - near.min(1, keepdims=True)) / temperature)
        weights /= weights.sum(1, keepdims=True)
        hits = values[nearest] == following[start : start + 1024, None]
        result[start : start + len(part)] = (weights * hits).sum(1)
    return result


def _mixed_perplexity(base_log_p: np.ndarray, knn_p: np.ndarray, weight: float) -> float:
    return float(np.exp(-np.log(weight * knn_p + (1 - weight) * np.exp(base_log_p)).mean()))


def prefix(target: Path, corpus: Path, prefix_tokens: int = 1024, window_count: int = 5) -> None:
    session = ModelSession(target, context_length=prefix_tokens + 512, threads=2)
    user_text = session.tokenize((corpus / "kjv-train.txt").read_text(encoding="utf-8"))
    held_out = session.tokenize((corpus / "kjv-heldout.txt").read_text(encoding="utf-8"))
    context = user_text[-prefix_tokens:]
    windows = [held_out[index * 511 : index * 511 + 512] for index in range(window_count)]
    base = []
    for window in windows:
        session.truncate(0)
        logits, _ = session.evaluate_with_hidden_states(window, range(511))
        base.append(_log_p(logits, np.asarray(window[1:])))
    # The user's text is read once; each window then starts from it (truncate keeps its KV cache).
    session.truncate(0)
    session.evaluate(context, [])
    personalised = []
    for index, window in enumerate(windows):
        session.truncate(len(context))
        logits, _ = session.evaluate_with_hidden_states(window, range(511))
        personalised.append(_log_p(logits, np.asarray(window[1:])))
        without, with_prefix = np.concatenate(base[: index + 1]), np.concatenate(personalised)
        print(
            f"windows {index + 1}: perplexity {np.exp(-without.mean()):.3f} -> {np.exp(-with_prefix.mean()):.3f} "
            f"({np.exp(without.mean() - with_prefix.mean()) - 1:+.1%})",
            flush=True,
        )
    session.close()


def _log_p(logits: np.ndarray, following: np.ndarray) -> np.ndarray:
    peak = logits.max(1, keepdims=True)
    log_total = peak[:, 0] + np.log(np.exp(logits - peak).sum(1))
    return logits[np.arange(len(following)), following] - log_total


def main() -> None:
    command, target_path, corpus_dir, *rest = sys.argv[1:]
    if command == "knn":
        knn(Path(target_path), Path(corpus_dir))
    else:
        prefix(Path(target_path), Path(corpus_dir), *(int(value) for value in rest))


if __name__ == "__main__":
    main()
