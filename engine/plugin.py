"""A user's side plugin: a small correction to the target's logits, computed from its final hidden state.

The shared GGUF target stays untouched. For the tokens of the plugin's vocabulary V' (the tokens
most frequent in the user's own text) the plugin adds a low-rank function of the target's final
normalised hidden state h, plus a bias::

    logits'[v] = logits[v] + ((h * input_scale) @ down @ up)[i] + bias[i]   for v = vocabulary[i]
    logits'[v] = logits[v]                                                  for v not in V'

Every other token keeps the target's logit, so the personalised distribution is an ordinary
softmax over the whole vocabulary: sampling, greedy choice and draft verification work on it as on
the target's own logits. The parameters are a few hundred kilobytes (see docs/PLUGINS.md).
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

    @property
    def rank(self) -> int:
        return int(self.down.shape[1])

    @property
    def parameter_count(self) -> int:
        return int(self.down.size + self.up.size + self.bias.size)

    def correction(self, hidden: np.ndarray) -> np.ndarray:
        """(rows x K) additions to the logits of ``vocabulary``, for hidden states (rows x hidden_size)."""
        projected = (hidden.astype(np.float32, copy=False) * np.float32(self.input_scale)) @ self.down
        return projected @ self.up + self.bias

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
        }

    @classmethod
    def from_arrays(cls, arrays) -> SidePlugin:
        try:
            if int(arrays["format"]) != PLUGIN_FORMAT:
                raise PluginError(f"plugin format {int(arrays['format'])} is not {PLUGIN_FORMAT}; train it again")
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
            )
        except KeyError as error:
            raise PluginError(f"the plugin file lacks {error}; train it again") from error
        size = len(plugin.vocabulary)
        if plugin.down.shape[0] != plugin.target.hidden_size or plugin.up.shape != (plugin.rank, size):
            raise PluginError("the plugin file's matrices do not fit together; train it again")
        if plugin.bias.shape != (size,) or (size and plugin.vocabulary.max() >= plugin.target.vocabulary_size):
            raise PluginError("the plugin file's vocabulary does not fit its target; train it again")
        return plugin


PLUGIN_FORMAT = 1
