"""A user's side plugin: a small correction to the target's logits, computed from its final hidden state.

The shared GGUF target stays untouched. For the tokens of the plugin's vocabulary V' (the tokens
most frequent in the user's own text) the plugin adds a low-rank function of the target's final
normalised hidden state h, plus a bias::

    x = h * input_scale
    logits'[v] = logits[v] + gate(x) * ((x @ down @ up)[i] + bias[i])   for v = vocabulary[i]
    logits'[v] = logits[v]                                             for v not in V'
    gate(x) = sigmoid(x @ gate_weight + gate_bias)

Every other token keeps the target's logit, so the personalised distribution is an ordinary
softmax over the whole vocabulary: sampling, greedy choice and draft verification work on it as on
the target's own logits. The parameters are a few hundred kilobytes (see docs/PLUGINS.md).

The gate is why a plugin stays out of the way: a correction that helps the user's own text pushes
their words into everything else too (measured: +8.8% perplexity on generic prose without a gate).
The gate is a logistic function of the same hidden state, fitted to tell the user's text from
generic text that duetto ships, so the correction fades to nothing where the context does not look
like the user's. It costs one dot product per row. A plugin without a gate (format 1) applies
everywhere, as it was trained to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from duetto.engine.errors import EngineError


class PluginError(EngineError):
    """A plugin file that cannot be used: unreadable, or made for another target model."""


@dataclass(frozen=True)
class TargetFingerprint:
    """What a side plugin was trained on: its hidden states only mean something for this model."""

    model_file: str
    vocabulary_size: int
    hidden_size: int


@dataclass(frozen=True, eq=False)
class SidePlugin:
    vocabulary: np.ndarray  # (K,) int64 token ids, ascending and distinct
    down: np.ndarray  # (hidden_size, rank) float32
    up: np.ndarray  # (rank, K) float32
    bias: np.ndarray  # (K,) float32
    input_scale: float  # multiplies h so that ``down`` trains at unit scale
    target: TargetFingerprint
    gate_weight: np.ndarray | None = None  # (hidden_size,) float32; None: the correction always applies
    gate_bias: float = 0.0
    learnt_from: tuple[str, ...] = ()
    """What the plugin has read, as the caller names it (the app: file digests and the last chat
    message), so that training again reads only what is new. The engine does not interpret it."""

    @property
    def rank(self) -> int:
        return int(self.down.shape[1])

    @property
    def parameter_count(self) -> int:
        gate = 0 if self.gate_weight is None else self.gate_weight.size + 1
        return int(self.down.size + self.up.size + self.bias.size + gate)

    def gate(self, hidden: np.ndarray) -> np.ndarray:
        """(rows,) how much of the correction applies, in [0, 1], for hidden states (rows x hidden_size)."""
        if self.gate_weight is None:
            return np.ones(len(hidden), dtype=np.float32)
        scaled = hidden.astype(np.float32, copy=False) * np.float32(self.input_scale)
        return _sigmoid(scaled @ self.gate_weight + np.float32(self.gate_bias))

    def correction(self, hidden: np.ndarray) -> np.ndarray:
        """(rows x K) additions to the logits of ``vocabulary``, for hidden states (rows x hidden_size)."""
        scaled = hidden.astype(np.float32, copy=False) * np.float32(self.input_scale)
        correction = scaled @ self.down @ self.up + self.bias
        if self.gate_weight is not None:
            correction *= _sigmoid(scaled @ self.gate_weight + np.float32(self.gate_bias))[:, None]
        return correction

    def apply(self, logits: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """Personalised logits (rows x vocabulary_size): a new array, ``logits`` is left as it was."""
        corrected = np.array(logits, dtype=np.float32, copy=True)
        corrected[:, self.vocabulary] += self.correction(hidden)
        return corrected

    def check_target(self, model_file: str, vocabulary_size: int, hidden_size: int) -> None:
        """Raise PluginError unless this plugin was trained on that target model."""
        wanted = self.target
        if (wanted.vocabulary_size, wanted.hidden_size) != (vocabulary_size, hidden_size) or (
            wanted.model_file != model_file
        ):
            raise PluginError(
                f"this plugin was trained for {wanted.model_file}, not {model_file}; "
                "train it again for this model (duetto plugin train)"
            )

    # --- files: numpy's .npz, no pickles ----------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "format": np.array(PLUGIN_FORMAT),
            "vocabulary": self.vocabulary.astype(np.int64),
            "down": self.down.astype(np.float32),
            "up": self.up.astype(np.float32),
            "bias": self.bias.astype(np.float32),
            "input_scale": np.array(self.input_scale, dtype=np.float64),
            "target_model_file": np.array(self.target.model_file),
            "target_vocabulary_size": np.array(self.target.vocabulary_size),
            "target_hidden_size": np.array(self.target.hidden_size),
            "learnt_from": np.array(self.learnt_from, dtype=np.str_),
            **(
                {}
                if self.gate_weight is None
                else {
                    "gate_weight": self.gate_weight.astype(np.float32),
                    "gate_bias": np.array(self.gate_bias, dtype=np.float64),
                }
            ),
        }

    @classmethod
    def from_arrays(cls, arrays) -> SidePlugin:
        try:
            if int(arrays["format"]) not in READABLE_FORMATS:
                raise PluginError(f"plugin format {int(arrays['format'])} is not {PLUGIN_FORMAT}; train it again")
            gated = "gate_weight" in arrays
            plugin = cls(
                vocabulary=np.asarray(arrays["vocabulary"], dtype=np.int64),
                down=np.asarray(arrays["down"], dtype=np.float32),
                up=np.asarray(arrays["up"], dtype=np.float32),
                bias=np.asarray(arrays["bias"], dtype=np.float32),
                input_scale=float(arrays["input_scale"]),
                target=TargetFingerprint(
                    model_file=str(arrays["target_model_file"]),
                    vocabulary_size=int(arrays["target_vocabulary_size"]),
                    hidden_size=int(arrays["target_hidden_size"]),
                ),
                gate_weight=np.asarray(arrays["gate_weight"], dtype=np.float32) if gated else None,
                gate_bias=float(arrays["gate_bias"]) if gated else 0.0,
                learnt_from=tuple(str(name) for name in arrays["learnt_from"]) if "learnt_from" in arrays else (),
            )
        except KeyError as error:
            raise PluginError(f"the plugin file lacks {error}; train it again") from error
        size = len(plugin.vocabulary)
        if plugin.down.shape[0] != plugin.target.hidden_size or plugin.up.shape != (plugin.rank, size):
            raise PluginError("the plugin file's matrices do not fit together; train it again")
        if plugin.bias.shape != (size,) or (size and plugin.vocabulary.max() >= plugin.target.vocabulary_size):
            raise PluginError("the plugin file's vocabulary does not fit its target; train it again")
        if plugin.gate_weight is not None and plugin.gate_weight.shape != (plugin.target.hidden_size,):
            raise PluginError("the plugin file's gate does not fit its target; train it again")
        return plugin


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32, copy=False)


PLUGIN_FORMAT = 2
"""2 added the gate; a format 1 plugin (no gate) still loads and applies everywhere."""
READABLE_FORMATS = (1, 2)
