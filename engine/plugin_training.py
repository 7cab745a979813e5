"""Training and measuring a side plugin on a user's text, exactly, with numpy.

The target reads the text in windows (each from an empty KV cache) and, for every position,
returns its logits and final hidden state. What the training needs of the 152k logits is kept per
position: the logits on the plugin vocabulary V', the log-sum-exp of the logits of every token
*not* in V' (one number), and the logit of the token that actually follows. Because the plugin only
moves logits inside V', these give the personalised log-probability over the full vocabulary::

    log p'(y) = logit'(y) - logaddexp(rest_log_sum, logsumexp(logits'[V']))

so the loss the plugin trains on is the true cross-entropy, not a sampled or truncated one.
Training is Adam on mini-batches with an L2 penalty, stopping early on a held-out tail of the text.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from duetto.engine.errors import EngineError
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin import SidePlugin, TargetFingerprint
from duetto.engine.progress import Progress, SilentProgress

MIN_TRAINING_TOKENS = 400  # below this the held-out split is too small to stop on


class NotEnoughText(EngineError):
    """The text is too short to train or measure a plugin on."""


@dataclass(frozen=True)
class TrainingSettings:
    rank: int = 16
    max_vocabulary: int = 4096  # V': at most this many of the text's most frequent tokens
    window: int = 512  # tokens the target reads per window (one llama.cpp batch)
    learning_rate: float = 1e-3
    l2_penalty: float = 1e-2
    batch_size: int = 128
    max_epochs: int = 20
    patience: int = 2  # epochs without a better held-out loss before stopping
    held_out_share: float = 0.1  # the text's last tenth, never trained on
    seed: int = 0


@dataclass(frozen=True, eq=False)
class Features:
    """Per predicted position: what the target saw and said, restricted to V' (see the module doc)."""

    hidden: np.ndarray  # (N, hidden_size) float32
    vocabulary_logits: np.ndarray  # (N, K) float32: the target's logits on V'
    rest_log_sum: np.ndarray  # (N,) float64: log-sum-exp of the logits outside V'
    next_logit: np.ndarray  # (N,) float32: the logit of the token that follows
    next_index: np.ndarray  # (N,) int64: that token's index in V', or -1 outside it

    def __len__(self) -> int:
        return len(self.next_index)

    def take(self, selection: slice | np.ndarray) -> Features:
        return Features(
            self.hidden[selection],
            self.vocabulary_logits[selection],
            self.rest_log_sum[selection],
            self.next_logit[selection],
            self.next_index[selection],
        )


@dataclass(frozen=True)
class TrainingReport:
    tokens: int
    training_positions: int
    held_out_positions: int
    vocabulary_size: int
    rank: int
    epochs: int
    best_epoch: int
    held_out_perplexity_base: float
    held_out_perplexity_plugin: float
    feature_seconds: float
    training_seconds: float


def choose_vocabulary(tokens: Sequence[int], max_size: int) -> np.ndarray:
    """The ``max_size`` most frequent tokens of ``tokens`` (ties by id), as ascending ids."""
    counts = Counter(tokens)
    ranked = sorted(counts, key=lambda token: (-counts[token], token))[:max_size]
    return np.array(sorted(ranked), dtype=np.int64)


def windows(token_count: int, window: int) -> list[tuple[int, int]]:
    """(start, end) spans overlapping by one token, so that every token but the first is predicted once."""
    spans = []
    start = 0
    while start < token_count - 1:
        end = min(start + window, token_count)
        spans.append((start, end))
        start = end - 1
    return spans


def collect_features(
    session: ModelSession,
    tokens: Sequence[int],
    vocabulary: np.ndarray,
    *,
    window: int = 512,
    progress: Progress | None = None,
) -> Features:
    """Run the target over ``tokens`` in windows and keep, per position, what training needs.

    Leaves the session's KV cache empty. ``progress`` counts tokens.
    """
    progress = progress or SilentProgress()
    spans = windows(len(tokens), min(window, session.context_length))
    positions = sum(end - start - 1 for start, end in spans)
    hidden = np.empty((positions, session.hidden_size), dtype=np.float32)
    vocabulary_logits = np.empty((positions, len(vocabulary)), dtype=np.float32)
    rest_log_sum = np.empty(positions, dtype=np.float64)
    next_logit = np.empty(positions, dtype=np.float32)
    index_of = np.full(session.vocabulary_size, -1, dtype=np.int64)
    index_of[vocabulary] = np.arange(len(vocabulary))
    following = np.asarray(tokens, dtype=np.int64)
    filled = 0
    progress.begin("reading the text with the target", len(tokens))
    try:
        for start, end in spans:
            session.truncate(0)
            count = end - start - 1
            logits, states = session.evaluate_with_hidden_states(list(tokens[start:end]), range(count), views=True)
            rows = slice(filled, filled + count)
            hidden[rows] = states
            vocabulary_logits[rows] = logits[:, vocabulary]
            next_logit[rows] = logits[np.arange(count), following[start + 1 : end]]
            peak = logits.max(axis=1, keepdims=True)
            np.subtract(logits, peak, out=logits)
            np.exp(logits, out=logits)
            logits[:, vocabulary] = 0.0
            rest = logits.sum(axis=1, dtype=np.float64)
            rest_log_sum[rows] = peak[:, 0] + np.log(np.maximum(rest, 1e-300))
            filled += count
            progress.advance(end - start - (1 if start else 0))
    finally:
        session.truncate(0)
        progress.end()
    return Features(hidden, vocabulary_logits, rest_log_sum, next_logit, index_of[following[1:]])


def log_likelihoods(features: Features, plugin: SidePlugin | None = None) -> np.ndarray:
    """log p(next token) at every position, over the full vocabulary, with or without the plugin."""
    result = np.empty(len(features), dtype=np.float64)
    for start in range(0, len(features), 2048):
        part = features.take(slice(start, start + 2048))
        logits = part.vocabulary_logits.astype(np.float64)
        if plugin is not None:
            logits += plugin.correction(part.hidden)
        result[start : start + len(part)] = _log_likelihood_rows(logits, part)[0]
    return result


def perplexity(log_likelihood_values: np.ndarray) -> float:
    return float(math.exp(-float(np.mean(log_likelihood_values)))) if len(log_likelihood_values) else float("nan")


def _log_likelihood_rows(logits: np.ndarray, part: Features) -> tuple[np.ndarray, np.ndarray]:
    """(log p(next) per row, softmax over V' per row) for personalised logits on V' (rows x K)."""
    peak = np.maximum(logits.max(axis=1, initial=-np.inf), part.rest_log_sum)
    exponentials = np.exp(logits - peak[:, None])
    total = exponentials.sum(axis=1) + np.exp(part.rest_log_sum - peak)
    log_total = peak + np.log(total)
    next_logits = part.next_logit.astype(np.float64)
    inside = np.flatnonzero(part.next_index >= 0)
    next_logits[inside] = logits[inside, part.next_index[inside]]
    return next_logits - log_total, exponentials / total[:, None]


class _Adam:
    def __init__(self, parameters: list[np.ndarray], learning_rate: float) -> None:
        self.parameters = parameters
        self.learning_rate = learning_rate
        self.first = [np.zeros_like(parameter) for parameter in parameters]
        self.second = [np.zeros_like(parameter) for parameter in parameters]
        self.steps = 0

    def step(self, gradients: list[np.ndarray]) -> None:
        self.steps += 1
        beta1, beta2 = 0.9, 0.999
        correction1, correction2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        for parameter, gradient, first, second in zip(self.parameters, gradients, self.first, self.second, strict=True):
            first *= beta1
            first += (1 - beta1) * gradient
            second *= beta2
            second += (1 - beta2) * gradient * gradient
            parameter -= self.learning_rate * (first / correction1) / (np.sqrt(second / correction2) + 1e-8)


def train_side_plugin(
    session: ModelSession,
    tokens: Sequence[int],
    settings: TrainingSettings = TrainingSettings(),
    progress: Progress | None = None,
) -> tuple[SidePlugin, TrainingReport]:
    """Train a side plugin for ``session``'s model on ``tokens`` (the user's text).

    Raises NotEnoughText below MIN_TRAINING_TOKENS. ``progress`` sees two tasks: reading the text
    (tokens) and training (epochs). The held-out tail is the text's last ``held_out_share``.
    """
    progress = progress or SilentProgress()
    if len(tokens) < MIN_TRAINING_TOKENS:
        raise NotEnoughText(f"the text has {len(tokens)} tokens; a plugin needs at least {MIN_TRAINING_TOKENS}")
    split = int(len(tokens) * (1 - settings.held_out_share))
    training_tokens, held_out_tokens = list(tokens[:split]), list(tokens[split - 1 :])
    vocabulary = choose_vocabulary(training_tokens, settings.max_vocabulary)
    started = time.perf_counter()
    training = collect_features(session, training_tokens, vocabulary, window=settings.window, progress=progress)
    held_out = collect_features(session, held_out_tokens, vocabulary, window=settings.window, progress=progress)
    feature_seconds = time.perf_counter() - started

    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    hidden_size = session.hidden_size
    input_scale = 1.0 / max(float(np.sqrt(np.mean(training.hidden.astype(np.float64) ** 2))), 1e-6)
    down = (rng.standard_normal((hidden_size, settings.rank)) / math.sqrt(hidden_size)).astype(np.float32)
    up = np.zeros((settings.rank, len(vocabulary)), dtype=np.float32)
    bias = np.zeros(len(vocabulary), dtype=np.float32)
    fingerprint = TargetFingerprint(session.path.name, session.vocabulary_size, hidden_size)

    def snapshot() -> SidePlugin:
        return SidePlugin(vocabulary, down.copy(), up.copy(), bias.copy(), input_scale, fingerprint)

    base_held_out = -float(np.mean(log_likelihoods(held_out)))
    best_loss, best_plugin, best_epoch = base_held_out, snapshot(), 0
    optimizer = _Adam([down, up, bias], settings.learning_rate)
    epochs_run = 0
    progress.begin("training the plugin", settings.max_epochs)
    try:
        for epoch in range(1, settings.max_epochs + 1):
            order = rng.permutation(len(training))
            for start in range(0, len(order), settings.batch_size):
                part = training.take(order[start : start + settings.batch_size])
                optimizer.step(_gradients(part, down, up, bias, input_scale, settings.l2_penalty))
            epochs_run = epoch
            progress.advance(1)
            loss = -float(np.mean(log_likelihoods(held_out, snapshot())))
            if loss < best_loss - 1e-4:
                best_loss, best_plugin, best_epoch = loss, snapshot(), epoch
            elif epoch - best_epoch >= settings.patience:
                break
    finally:
        progress.end()
    report = TrainingReport(
        tokens=len(tokens),
        training_positions=len(training),
        held_out_positions=len(held_out),
        vocabulary_size=len(vocabulary),
        rank=settings.rank,
        epochs=epochs_run,
        best_epoch=best_epoch,
        held_out_perplexity_base=round(math.exp(base_held_out), 4),
        held_out_perplexity_plugin=round(math.exp(best_loss), 4),
        feature_seconds=round(feature_seconds, 2),
        training_seconds=round(time.perf_counter() - started, 2),
    )
    return best_plugin, report


def _gradients(
    part: Features, down: np.ndarray, up: np.ndarray, bias: np.ndarray, input_scale: float, l2_penalty: float
) -> list[np.ndarray]:
    """Gradients of mean cross-entropy + l2_penalty * (|down|^2 + |up|^2) for one mini-batch."""
    scaled = part.hidden * np.float32(input_scale)
    projected = scaled @ down  # (n, rank)
    logits = part.vocabulary_logits + projected @ up + bias
    _, probabilities = _log_likelihood_rows(logits.astype(np.float64), part)
    delta = probabilities.astype(np.float32)  # d(-log p)/d logits' on V'
    inside = np.flatnonzero(part.next_index >= 0)
    delta[inside, part.next_index[inside]] -= 1.0
    delta /= len(part)
    gradient_up = projected.T @ delta + 2 * l2_penalty * up
    gradient_down = scaled.T @ (delta @ up.T) + 2 * l2_penalty * down
    return [gradient_down, gradient_up, delta.sum(axis=0)]


def measure(
    session: ModelSession,
    tokens: Sequence[int],
    plugin: SidePlugin | None,
    *,
    window: int = 512,
    progress: Progress | None = None,
) -> tuple[float, float, int]:
    """(perplexity without the plugin, with it, positions scored) of ``session``'s model on ``tokens``."""
    if len(tokens) < 2:
        raise NotEnoughText("the text has fewer than 2 tokens; nothing to score")
    vocabulary = plugin.vocabulary if plugin is not None else np.empty(0, dtype=np.int64)
    features = collect_features(session, tokens, vocabulary, window=window, progress=progress)
    base = perplexity(log_likelihoods(features))
    personalised = perplexity(log_likelihoods(features, plugin)) if plugin is not None else base
    return base, personalised, len(features)
