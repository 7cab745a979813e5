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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from duetto.engine.errors import EngineError
from duetto.engine.model_session import ModelSession
from duetto.engine.output_matrix import output_rows
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
    generic_weight: float = 1.0  # weight of KL(target || personalised) on generic text
    gate_weight: float = 0.1  # weight of the gate's own loss: 1 on the user's text, 0 on generic text
    retained_gain: float = 0.85  # the share of the held-out gain the gate's caution may not cost
    gate_caution: float = 4.0
    """In the gate's own loss, how much more a gate left open on generic text costs than one left
    shut on the user's: a correction where it does not belong hurts more than a missed one."""
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

    @classmethod
    def concatenate(cls, parts: Sequence[Features], hidden_size: int, vocabulary_size: int) -> Features:
        if not parts:
            return cls(
                np.empty((0, hidden_size), dtype=np.float32),
                np.empty((0, vocabulary_size), dtype=np.float32),
                np.empty(0, dtype=np.float64),
                np.empty(0, dtype=np.float32),
                np.empty(0, dtype=np.int64),
            )
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) for name in _FEATURE_ARRAYS))

    def take(self, selection: slice | np.ndarray) -> Features:
        return Features(
            self.hidden[selection],
            self.vocabulary_logits[selection],
            self.rest_log_sum[selection],
            self.next_logit[selection],
            self.next_index[selection],
        )


_FEATURE_ARRAYS = ("hidden", "vocabulary_logits", "rest_log_sum", "next_logit", "next_index")


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
    feature_seconds: float  # reading the user's text
    training_seconds: float
    generic_positions: int = 0
    generic_held_out_perplexity_base: float = float("nan")
    generic_held_out_perplexity_plugin: float = float("nan")
    mean_gate_user: float = float("nan")  # on the user's held-out tail
    mean_gate_generic: float = float("nan")  # on the generic held-out tails
    generic_feature_seconds: float = 0.0  # the generic text's features for this vocabulary (already read)
    gate_shift: float = 0.0  # how far the gate's bias was lowered to make it cautious


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
    positions = _position_count(session, tokens, window)
    if not positions:
        return Features.concatenate([], session.hidden_size, len(vocabulary))
    hidden = np.empty((positions, session.hidden_size), dtype=np.float32)
    vocabulary_logits = np.empty((positions, len(vocabulary)), dtype=np.float32)
    rest_log_sum = np.empty(positions, dtype=np.float64)
    next_logit = np.empty(positions, dtype=np.float32)
    index_of = np.full(session.vocabulary_size, -1, dtype=np.int64)
    index_of[vocabulary] = np.arange(len(vocabulary))
    following = np.asarray(tokens, dtype=np.int64)
    label = "reading the text with the target"
    for rows, logits, states, next_tokens in _read_windows(session, tokens, window, progress, label):
        hidden[rows] = states
        vocabulary_logits[rows] = logits[:, vocabulary]
        next_logit[rows] = logits[np.arange(len(next_tokens)), next_tokens]
        peak = logits.max(axis=1, keepdims=True)
        np.subtract(logits, peak, out=logits)
        np.exp(logits, out=logits)
        logits[:, vocabulary] = 0.0
        rest = logits.sum(axis=1, dtype=np.float64)
        rest_log_sum[rows] = peak[:, 0] + np.log(np.maximum(rest, 1e-300))
    return Features(hidden, vocabulary_logits, rest_log_sum, next_logit, index_of[following[1:]])


def _position_count(session: ModelSession, tokens: Sequence[int], window: int) -> int:
    return sum(end - start - 1 for start, end in windows(len(tokens), min(window, session.context_length)))


def _read_windows(
    session: ModelSession, tokens: Sequence[int], window: int, progress: Progress | None, label: str
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
    """Run the target over ``tokens`` window by window, each from an empty KV cache, and yield per
    window (its rows among all predicted positions, the logits and hidden states of those rows,
    the tokens that follow them). The logits are llama.cpp's buffer: use them before the next one.
    Leaves the KV cache empty; ``progress`` counts tokens."""
    progress = progress or SilentProgress()
    following = np.asarray(tokens, dtype=np.int64)
    filled = 0
    progress.begin(label, len(tokens))
    try:
        for start, end in windows(len(tokens), min(window, session.context_length)):
            session.truncate(0)
            count = end - start - 1
            logits, states = session.evaluate_with_hidden_states(list(tokens[start:end]), range(count), views=True)
            yield slice(filled, filled + count), logits, states, following[start + 1 : end]
            filled += count
            progress.advance(end - start - (1 if start else 0))
    finally:
        session.truncate(0)
        progress.end()


@dataclass(frozen=True, eq=False)
class TargetReading:
    """What the target said at every position of a text, for any plugin vocabulary.

    Generic text is the same for every user, the vocabulary is not: so it is read once per model
    and kept like this (``app/core/plugins.py`` caches it). A chat message is read by the target
    anyway as part of its prompt, and kept like this as it is typed (``read_in_context``), so that
    training need not read it again. A plugin's features are made from a reading with the output
    matrix's rows for its vocabulary (``reading_features``).
    """

    hidden: np.ndarray  # (N, hidden_size) float32
    log_total: np.ndarray  # (N,) float64: log-sum-exp of all the logits
    next_token: np.ndarray  # (N,) int64
    next_logit: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.next_token)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Its arrays by field name (after ``prefix``), for an ``.npz`` file."""
        return {prefix + field: getattr(self, field) for field in READING_FIELDS}

    @classmethod
    def from_arrays(cls, stored, prefix: str = "") -> TargetReading:
        """The reading ``to_arrays`` stored; hidden states in 32 bits, however they were kept."""
        reading = cls(*(np.asarray(stored[prefix + field]) for field in READING_FIELDS))
        return replace(reading, hidden=reading.hidden.astype(np.float32, copy=False))


def _reading_of(logits: np.ndarray, states: np.ndarray, next_tokens: np.ndarray) -> TargetReading:
    """A reading of rows whose logits and hidden states llama.cpp has just computed (``logits`` may
    be its buffer: it is only read)."""
    next_logit = logits[np.arange(len(next_tokens)), next_tokens].astype(np.float32)
    peak = logits.max(axis=1)
    log_total = peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1, dtype=np.float64))
    return TargetReading(np.array(states, dtype=np.float32), log_total, np.asarray(next_tokens, np.int64), next_logit)


def _joined(readings: Sequence[TargetReading], hidden_size: int) -> TargetReading:
    if not readings:
        return TargetReading(
            np.empty((0, hidden_size), np.float32), np.empty(0), np.empty(0, np.int64), np.empty(0, np.float32)
        )
    return TargetReading(
        *(np.concatenate([getattr(reading, field) for reading in readings]) for field in READING_FIELDS)
    )


READING_FIELDS = ("hidden", "log_total", "next_token", "next_logit")


def _reading_part(reading: TargetReading, rows: slice) -> TargetReading:
    return TargetReading(*(getattr(reading, field)[rows] for field in READING_FIELDS))


def read_generic(
    session: ModelSession,
    tokens: Sequence[int],
    *,
    window: int = 512,
    progress: Progress | None = None,
    label: str = "reading generic text",
) -> TargetReading:
    """Run the target over a generic text in windows; leaves the session's KV cache empty."""
    parts = [
        _reading_of(logits, states, next_tokens)
        for _, logits, states, next_tokens in _read_windows(session, tokens, window, progress, label)
    ]
    return _joined(parts, session.hidden_size)


IN_CONTEXT_BATCH = 128
"""Rows per batch when a reading is taken in passing. llama.cpp keeps its output buffer at the
most rows one batch asked for, for the context's life: 128 rows of a 152k vocabulary are 78 MB
held by the chat's target, where a 512-token batch would hold 311 MB."""


@dataclass(frozen=True, eq=False)
class InContextReading:
    reading: TargetReading
    last_logits: np.ndarray  # (vocabulary_size,) the plain target's logits after the last token
    last_hidden: np.ndarray  # (hidden_size,) and its hidden state there


def read_in_context(
    session: ModelSession,
    tokens: Sequence[int],
    rows: range | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> InContextReading | None:
    """Append ``tokens`` to the session's KV cache (after whatever it holds: a chat's earlier turns)
    and keep the target's reading of the tokens after ``rows`` (row i predicts token i + 1; by
    default every token after the first): what a plugin trains on, taken where the target reads
    the text anyway. Every row costs the output projection a plain prompt read skips
    (``ModelSession.evaluate_with_hidden_states``), so keep ``tokens`` to the text and the few
    tokens around it that would otherwise cost an evaluation of their own.

    ``session`` must be the plain target: a personalised one's logits carry the plugin. Read in
    batches of IN_CONTEXT_BATCH, with ``should_stop`` checked and ``on_progress(tokens read)``
    called between them; None when stopped (what was read stays in the cache, as with
    ``evaluate_prompt``).
    """
    rows = range(len(tokens) - 1) if rows is None else rows
    following = np.asarray(tokens, dtype=np.int64)
    parts = []
    for start in range(0, len(tokens), IN_CONTEXT_BATCH):
        if start and on_progress is not None:
            on_progress(start)
        if start and should_stop is not None and should_stop():
            return None
        chunk = list(tokens[start : start + IN_CONTEXT_BATCH])
        logits, states = session.evaluate_with_hidden_states(chunk, range(len(chunk)), views=True)
        first, last = max(rows.start, start), min(rows.stop, start + len(chunk))
        if first < last:
            kept = slice(first - start, last - start)
            parts.append(_reading_of(logits[kept], states[kept], following[first + 1 : last + 1]))
    return InContextReading(_joined(parts, session.hidden_size), logits[-1].copy(), states[-1].copy())


def reading_features(reading: TargetReading, vocabulary: np.ndarray, vocabulary_rows: np.ndarray) -> Features:
    """A generic reading's features for ``vocabulary``, whose output-matrix rows are ``vocabulary_rows``
    (engine/output_matrix.py): its logits on V' are computed, the rest's log-sum-exp follows."""
    vocabulary_logits = reading.hidden @ vocabulary_rows.T
    inside = _log_sum_exp(vocabulary_logits.astype(np.float64))
    # what the whole vocabulary holds minus what V' holds; never below a sliver (rounding)
    share_inside = np.minimum(np.exp(inside - reading.log_total), 1.0 - 1e-6)
    rest_log_sum = reading.log_total + np.log1p(-share_inside)
    index_of = np.full(int(max(reading.next_token.max(initial=0), vocabulary.max(initial=0))) + 1, -1, dtype=np.int64)
    index_of[vocabulary] = np.arange(len(vocabulary))
    return Features(
        reading.hidden,
        vocabulary_logits.astype(np.float32),
        rest_log_sum,
        reading.next_logit,
        index_of[reading.next_token],
    )


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


def kl_divergences(features: Features, plugin: SidePlugin) -> np.ndarray:
    """KL(target || target with the plugin) at every position, over the full vocabulary, in nats.

    Outside V' both distributions are the same logits under different normalisers, so only the
    normalisers and the probabilities on V' are needed (see the module doc).
    """
    result = np.empty(len(features), dtype=np.float64)
    for start in range(0, len(features), 2048):
        part = features.take(slice(start, start + 2048))
        base = part.vocabulary_logits.astype(np.float64)
        moved = plugin.correction(part.hidden).astype(np.float64)
        log_total = np.logaddexp(part.rest_log_sum, _log_sum_exp(base))
        log_total_personal = np.logaddexp(part.rest_log_sum, _log_sum_exp(base + moved))
        probabilities = np.exp(base - log_total[:, None])
        result[start : start + len(part)] = log_total_personal - log_total - (probabilities * moved).sum(axis=1)
    return np.maximum(result, 0.0)


def _log_sum_exp(logits: np.ndarray) -> np.ndarray:
    if logits.shape[1] == 0:
        return np.full(len(logits), -np.inf)
    peak = logits.max(axis=1)
    return peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1))


def _base_probabilities(part: Features) -> np.ndarray:
    """The target's own probabilities on V' (rows x K), normalised over the full vocabulary."""
    logits = part.vocabulary_logits.astype(np.float64)
    log_total = np.logaddexp(part.rest_log_sum, _log_sum_exp(logits))
    return np.exp(logits - log_total[:, None])


@dataclass
class _Parameters:
    """What training moves; ``gate_bias`` is a 1-element array so that Adam updates it in place."""

    down: np.ndarray
    up: np.ndarray
    bias: np.ndarray
    gate_weight: np.ndarray
    gate_bias: np.ndarray
    gated: bool = True  # False: the correction always applies (no generic text to fit a gate on)

    def as_list(self) -> list[np.ndarray]:
        return [self.down, self.up, self.bias, self.gate_weight, self.gate_bias]


def _forward(part: Features, parameters: _Parameters, input_scale: float):
    scaled = part.hidden * np.float32(input_scale)
    projected = scaled @ parameters.down
    raw = projected @ parameters.up + parameters.bias
    if parameters.gated:
        gate = 1.0 / (1.0 + np.exp(-(scaled @ parameters.gate_weight + parameters.gate_bias[0]).astype(np.float64)))
    else:
        gate = np.ones(len(part))
    logits = part.vocabulary_logits.astype(np.float64) + gate[:, None] * raw
    return scaled, projected, raw, gate, logits


def training_loss(user: Features, generic: Features, parameters: _Parameters, input_scale: float, settings) -> float:
    """The objective ``_gradients`` differentiates (for checking it, and for reading progress):

    mean cross-entropy on the user's positions
    + generic_weight * mean KL(target || personalised) on generic positions
    + gate_weight * (mean -log gate on the user's positions
                     + gate_caution * mean -log(1 - gate) on generic ones)
    + l2_penalty * (|down|^2 + |up|^2 + |gate_weight|^2)
    """
    total = settings.l2_penalty * sum(
        float((array.astype(np.float64) ** 2).sum())
        for array in (parameters.down, parameters.up, parameters.gate_weight)
    )
    for part, is_user in ((user, True), (generic, False)):
        if not len(part):
            continue
        _, _, raw, gate, logits = _forward(part, parameters, input_scale)
        if is_user:
            total += -float(np.mean(_log_likelihood_rows(logits, part)[0]))
            total += settings.gate_weight * -float(np.mean(np.log(np.maximum(gate, 1e-300))))
        else:
            base = part.vocabulary_logits.astype(np.float64)
            log_total = np.logaddexp(part.rest_log_sum, _log_sum_exp(base))
            log_total_personal = np.logaddexp(part.rest_log_sum, _log_sum_exp(logits))
            moved = logits - base
            divergence = log_total_personal - log_total - (np.exp(base - log_total[:, None]) * moved).sum(axis=1)
            total += settings.generic_weight * float(np.mean(divergence))
            caution = settings.gate_weight * settings.gate_caution
            total += caution * -float(np.mean(np.log(np.maximum(1.0 - gate, 1e-300))))
    return total


def _gradients(
    user: Features, generic: Features, parameters: _Parameters, input_scale: float, settings
) -> list[np.ndarray]:
    """Gradients of ``training_loss`` for one mini-batch of user and one of generic positions."""
    gradients = [np.zeros_like(array) for array in parameters.as_list()]
    for part, is_user in ((user, True), (generic, False)):
        count = len(part)
        if not count:
            continue
        scaled, projected, raw, gate, logits = _forward(part, parameters, input_scale)
        _, probabilities = _log_likelihood_rows(logits, part)
        if is_user:
            delta = probabilities  # d(-log p(next))/d logits' on V'
            inside = np.flatnonzero(part.next_index >= 0)
            delta[inside, part.next_index[inside]] -= 1.0
            delta /= count
            wanted_gate, gate_loss_weight = 1.0, settings.gate_weight
        else:
            delta = (probabilities - _base_probabilities(part)) * (settings.generic_weight / count)  # d KL
            wanted_gate, gate_loss_weight = 0.0, settings.gate_weight * settings.gate_caution
        moved_delta = (delta * gate[:, None]).astype(np.float32)
        gate_delta = (delta * raw).sum(axis=1) * gate * (1.0 - gate)
        gate_delta += gate_loss_weight * (gate - wanted_gate) / count  # d(-log gate) or d(-log(1 - gate))
        gate_delta = gate_delta.astype(np.float32)
        gradients[0] += scaled.T @ (moved_delta @ parameters.up.T)
        gradients[1] += projected.T @ moved_delta
        gradients[2] += moved_delta.sum(axis=0)
        gradients[3] += scaled.T @ gate_delta
        gradients[4] += gate_delta.sum(keepdims=True)
    gradients[0] += 2 * settings.l2_penalty * parameters.down
    gradients[1] += 2 * settings.l2_penalty * parameters.up
    gradients[3] += 2 * settings.l2_penalty * parameters.gate_weight
    return gradients


def _fit_gate(
    user: Features, generic: Features, parameters: _Parameters, input_scale: float, settings: TrainingSettings
) -> None:
    """Start the gate as a class-balanced logistic regression of user text against generic text.

    Joint training then moves it with the correction, but from a gate that already separates the
    two: learning it only through the correction's mini-batches is too slow to get there.
    """
    rng = np.random.default_rng(settings.seed + 1)
    chosen = [part.take(rng.permutation(len(part))[:GATE_FIT_POSITIONS]) for part in (user, generic)]
    inputs = [part.hidden * np.float32(input_scale) for part in chosen]
    optimizer = _Adam([parameters.gate_weight, parameters.gate_bias], GATE_LEARNING_RATE)
    for _ in range(GATE_FIT_STEPS):
        weight_gradient = 2 * settings.l2_penalty * parameters.gate_weight
        bias_gradient = np.zeros(1, dtype=np.float32)
        for scaled, wanted, weight in zip(inputs, (1.0, 0.0), (1.0, settings.gate_caution), strict=True):
            gate = 1.0 / (1.0 + np.exp(-(scaled @ parameters.gate_weight + parameters.gate_bias[0])))
            delta = (weight * (gate - wanted) / len(scaled)).astype(np.float32)
            weight_gradient = weight_gradient + scaled.T @ delta
            bias_gradient += delta.sum()
        optimizer.step([weight_gradient, bias_gradient])


GATE_FIT_POSITIONS = 4096  # per side: enough for a linear classifier of the hidden state
GATE_FIT_STEPS = 200
GATE_LEARNING_RATE = 0.01


def _make_gate_cautious(
    plugin: SidePlugin, held_out: Features, base_cross_entropy: float, retained_gain: float
) -> tuple[SidePlugin, float]:
    """The plugin with its gate's bias lowered as far as it can go while the plugin keeps
    ``retained_gain`` of what it gains on the user's held-out text (in nats), and that shift.

    The gate was fitted against the generic text duetto ships; text unlike both (another author's
    narrative, say) can fall in between and half open it. There a correction costs more than a
    missed one, so the gate is set cautious: measured on the benchmark's own generic prose
    (docs/PLUGINS.md), opening it only where it is sure cuts the damage by an order of magnitude
    for a few percent of the user's gain.
    """

    def gain(shift: float) -> float:
        shifted = replace(plugin, gate_bias=plugin.gate_bias + shift)
        return base_cross_entropy + float(np.mean(log_likelihoods(held_out, shifted)))

    full = gain(0.0)
    if full <= 0:
        return plugin, 0.0
    kept, lowest = 0.0, -GATE_SHIFT_LIMIT  # gain(kept) is enough; gain(lowest) may not be
    if gain(lowest) >= retained_gain * full:
        kept = lowest
    else:
        for _ in range(GATE_SHIFT_STEPS):
            middle = (kept + lowest) / 2
            if gain(middle) >= retained_gain * full:
                kept = middle
            else:
                lowest = middle
    return replace(plugin, gate_bias=plugin.gate_bias + kept), kept


GATE_SHIFT_LIMIT = 16.0  # a logit shift beyond which the gate is shut everywhere
GATE_SHIFT_STEPS = 10


def _split_generic(features: Features, held_out_share: float) -> tuple[Features, Features]:
    """A generic text's features: its first part to train on, its last ``held_out_share`` to stop on."""
    split = int(len(features) * (1 - held_out_share))
    return features.take(slice(0, split)), features.take(slice(split, len(features)))


def train_side_plugin(
    session: ModelSession,
    tokens: Sequence[int],
    settings: TrainingSettings = TrainingSettings(),
    progress: Progress | None = None,
    *,
    generic: Sequence[TargetReading] = (),
    start: SidePlugin | None = None,
    readings: Sequence[TargetReading] = (),
) -> tuple[SidePlugin, TrainingReport]:
    """Train a side plugin for ``session``'s model on ``tokens`` (the user's text) and ``readings``
    (more of it that the target has read already: chat messages as they were typed, which follow
    ``tokens`` in time).

    ``generic`` are readings of text that is not the user's (duetto ships prose and code;
    ``read_generic``): the plugin is trained to leave the target's distribution there as it was
    (a KL term) and its gate to tell the two apart. Without generic text no gate is trained and
    the correction applies everywhere.

    Raises NotEnoughText below MIN_TRAINING_TOKENS. ``progress`` sees the reading of the user's
    text and of the generic text (tokens), then the training (epochs). The held-out tail is the
    last ``held_out_share`` of the user's positions (the text's, then the readings') and of each
    generic text. With ``start`` (the
    user's plugin so far) ``tokens`` are only what is new: training goes on from its weights, over
    its vocabulary, and the text it learnt from before is not read again.
    """
    progress = progress or SilentProgress()
    kept = _joined(readings, session.hidden_size)
    count = len(tokens) + len(kept)
    if count < MIN_TRAINING_TOKENS:
        raise NotEnoughText(f"the text has {count} tokens; a plugin needs at least {MIN_TRAINING_TOKENS}")
    # The held-out tail comes from the readings first (the newest text), then from the text's end.
    positions = max(len(tokens) - 1, 0) + len(kept)
    held = positions - int(positions * (1 - settings.held_out_share))
    kept_held = min(held, len(kept))
    split = len(tokens) - (held - kept_held)
    training_tokens, held_out_tokens = list(tokens[:split]), list(tokens[split - 1 :]) if split < len(tokens) else []
    kept_training = _reading_part(kept, slice(0, len(kept) - kept_held))
    kept_held_out = _reading_part(kept, slice(len(kept) - kept_held, len(kept)))
    if start is None:
        vocabulary = choose_vocabulary(training_tokens + kept_training.next_token.tolist(), settings.max_vocabulary)
    else:
        vocabulary = start.vocabulary
    started = time.perf_counter()
    training = collect_features(session, training_tokens, vocabulary, window=settings.window, progress=progress)
    held_out = collect_features(session, held_out_tokens, vocabulary, window=settings.window, progress=progress)
    feature_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rows = output_rows(session.path, vocabulary) if generic or len(kept) else None
    if len(kept):
        training = Features.concatenate(
            [training, reading_features(kept_training, vocabulary, rows)], session.hidden_size, len(vocabulary)
        )
        held_out = Features.concatenate(
            [held_out, reading_features(kept_held_out, vocabulary, rows)], session.hidden_size, len(vocabulary)
        )
    generic_parts = [
        _split_generic(reading_features(reading, vocabulary, rows), 0.25) for reading in generic if len(reading)
    ]
    generic_training = Features.concatenate([part for part, _ in generic_parts], session.hidden_size, len(vocabulary))
    generic_held_out = Features.concatenate([part for _, part in generic_parts], session.hidden_size, len(vocabulary))
    generic_feature_seconds = time.perf_counter() - started
    fingerprint = TargetFingerprint(session.path.name, session.vocabulary_size, session.hidden_size)
    plugin, report = fit_side_plugin(
        training, held_out, generic_training, generic_held_out, vocabulary, fingerprint, settings, progress, start
    )
    return plugin, replace(
        report, tokens=count, feature_seconds=round(feature_seconds, 2),
        generic_feature_seconds=round(generic_feature_seconds, 2),
    )  # fmt: skip


def fit_side_plugin(
    training: Features,
    held_out: Features,
    generic_training: Features,
    generic_held_out: Features,
    vocabulary: np.ndarray,
    fingerprint: TargetFingerprint,
    settings: TrainingSettings = TrainingSettings(),
    progress: Progress | None = None,
    start: SidePlugin | None = None,
) -> tuple[SidePlugin, TrainingReport]:
    """The training itself, on features already read (``train_side_plugin`` reads them): the
    report's token count and reading times are left at zero for the caller to fill in.

    ``start`` is a plugin to go on training (its vocabulary must be ``vocabulary``): training
    begins from its weights and keeps them unless the new text's held-out tail does better.
    """
    progress = progress or SilentProgress()

    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    hidden_size = training.hidden.shape[1]
    gated = len(generic_training) > 0
    if start is None:
        input_scale = 1.0 / max(float(np.sqrt(np.mean(training.hidden.astype(np.float64) ** 2))), 1e-6)
        parameters = _Parameters(
            down=(rng.standard_normal((hidden_size, settings.rank)) / math.sqrt(hidden_size)).astype(np.float32),
            up=np.zeros((settings.rank, len(vocabulary)), dtype=np.float32),
            bias=np.zeros(len(vocabulary), dtype=np.float32),
            gate_weight=np.zeros(hidden_size, dtype=np.float32),
            gate_bias=np.zeros(1, dtype=np.float32),
            gated=gated,
        )
    else:
        input_scale = start.input_scale
        parameters = _Parameters(
            down=start.down.copy(),
            up=start.up.copy(),
            bias=start.bias.copy(),
            gate_weight=np.zeros(hidden_size, dtype=np.float32)
            if start.gate_weight is None
            else start.gate_weight.copy(),
            gate_bias=np.array([start.gate_bias], dtype=np.float32),
            gated=gated,
        )

    def snapshot() -> SidePlugin:
        return SidePlugin(
            vocabulary,
            parameters.down.copy(),
            parameters.up.copy(),
            parameters.bias.copy(),
            input_scale,
            fingerprint,
            gate_weight=parameters.gate_weight.copy() if gated else None,
            gate_bias=float(parameters.gate_bias[0]),
        )

    def held_out_loss(plugin: SidePlugin) -> tuple[float, float]:
        """(mean cross-entropy on the user's held-out tail, the objective training stops on)."""
        cross_entropy = -float(np.mean(log_likelihoods(held_out, plugin)))
        divergence = float(np.mean(kl_divergences(generic_held_out, plugin))) if len(generic_held_out) else 0.0
        return cross_entropy, cross_entropy + settings.generic_weight * divergence

    base_held_out = -float(np.mean(log_likelihoods(held_out)))
    if gated and (start is None or start.gate_weight is None):
        _fit_gate(training, generic_training, parameters, input_scale, settings)
    best_plugin, best_epoch = snapshot(), 0
    best_cross_entropy, best_objective = held_out_loss(best_plugin)
    optimizer = _Adam(parameters.as_list() if gated else parameters.as_list()[:3], settings.learning_rate)
    no_generic = generic_training.take(slice(0, 0))
    epochs_run = 0
    progress.begin("training the plugin", settings.max_epochs)
    try:
        for epoch in range(1, settings.max_epochs + 1):
            order = rng.permutation(len(training))
            generic_order = rng.permutation(len(generic_training)) if gated else np.empty(0, dtype=np.int64)
            for step, start in enumerate(range(0, len(order), settings.batch_size)):
                part = training.take(order[start : start + settings.batch_size])
                if gated:
                    offset = (step * settings.batch_size) % len(generic_order)
                    generic_part = generic_training.take(np.roll(generic_order, -offset)[: settings.batch_size])
                else:
                    generic_part = no_generic
                gradients = _gradients(part, generic_part, parameters, input_scale, settings)
                optimizer.step(gradients if gated else gradients[:3])
            epochs_run = epoch
            progress.advance(1)
            plugin = snapshot()
            cross_entropy, objective = held_out_loss(plugin)
            if objective < best_objective - 1e-4:
                best_objective, best_cross_entropy, best_plugin, best_epoch = objective, cross_entropy, plugin, epoch
            elif epoch - best_epoch >= settings.patience:
                break
    finally:
        progress.end()
    gate_shift = 0.0
    if gated and best_epoch > 0:
        best_plugin, gate_shift = _make_gate_cautious(best_plugin, held_out, base_held_out, settings.retained_gain)
        best_cross_entropy = -float(np.mean(log_likelihoods(held_out, best_plugin)))
    generic_base = -float(np.mean(log_likelihoods(generic_held_out))) if len(generic_held_out) else float("nan")
    generic_personal = (
        -float(np.mean(log_likelihoods(generic_held_out, best_plugin))) if len(generic_held_out) else float("nan")
    )
    report = TrainingReport(
        tokens=0,
        training_positions=len(training),
        held_out_positions=len(held_out),
        generic_positions=len(generic_training) + len(generic_held_out),
        vocabulary_size=len(vocabulary),
        rank=settings.rank,
        epochs=epochs_run,
        best_epoch=best_epoch,
        held_out_perplexity_base=round(math.exp(base_held_out), 4),
        held_out_perplexity_plugin=round(math.exp(best_cross_entropy), 4),
        generic_held_out_perplexity_base=round(math.exp(generic_base), 4),
        generic_held_out_perplexity_plugin=round(math.exp(generic_personal), 4),
        mean_gate_user=round(float(np.mean(best_plugin.gate(held_out.hidden))), 4),
        mean_gate_generic=round(float(np.mean(best_plugin.gate(generic_held_out.hidden))), 4)
        if len(generic_held_out)
        else float("nan"),
        feature_seconds=0.0,
        gate_shift=round(gate_shift, 3),
        training_seconds=round(time.perf_counter() - started, 2),
    )
    return best_plugin, report


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
