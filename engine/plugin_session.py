"""The target with one user's plugin applied, behind ModelSession's own interface.

The decoder calls ``evaluate`` and ``evaluate_prompt`` on its target (and reads tokens, lengths and
the tokenizer), so wrapping the target session is enough: the reply's first token and every
verified draft see the personalised logits, and exact mode is lossless with respect to the
personalised target with no change to the decoder. (Anything that computes logits must be
defined here: ``__getattr__`` would hand out the plain session's own method.)

- A side plugin needs the hidden state next to each logits row, so rows that are asked for go
  through ``evaluate_with_hidden_states``; the tokens before the first such row (a prompt's prefill)
  go through the plain path, which computes no output rows and stays as fast as without a plugin.
- A LoRA adapter is loaded by llama.cpp into the target's context and changes the model itself;
  ``evaluate`` is then the session's own.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from duetto.engine.model_session import ModelSession
from duetto.engine.plugin import PluginError, SidePlugin
from duetto.engine.plugin_files import LORA_FILE, load_side_plugin, plugin_kind

_OWN_ATTRIBUTES = frozenset({"session", "side_plugin", "lora_path", "_adapter", "directory"})


class PersonalisedSession:
    """A ModelSession whose logits carry one user's plugin; every other attribute is the session's."""

    def __init__(self, session: ModelSession, side_plugin: SidePlugin | None = None, lora_path: Path | None = None):
        if side_plugin is not None and lora_path is not None:
            raise PluginError("a session takes a side plugin or a LoRA adapter, not both")
        self.session = session
        self.directory: Path | None = None
        """The user's plugin directory it came from (``personalise``), where readings for it are kept."""
        self.side_plugin = side_plugin
        self.lora_path = lora_path
        self._adapter = None
        if side_plugin is not None:
            side_plugin.check_target(session.path.name, session.vocabulary_size, session.hidden_size)
        if lora_path is not None:
            self._adapter = _attach_lora(session, lora_path)
            session.truncate(0)  # whatever the cache held was computed without the adapter
        # A side plugin changes only the logits: the cache's keys and values stay valid, and the
        # decoder evaluates a prompt's last token again for its logits whatever the cache holds.

    def __getattr__(self, name: str):
        # Only called for attributes this wrapper lacks: tokens, truncate, tokenize, context_length...
        return getattr(self.session, name)

    def __setattr__(self, name: str, value) -> None:
        # The session's state (its tokens, above all) must stay in one place: writes go to the session.
        if name in _OWN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            setattr(self.session, name, value)

    evaluate_prompt = ModelSession.evaluate_prompt
    """ModelSession's, through this wrapper's ``evaluate`` (the only thing it calls): the pieces are
    read plainly and the last row's logits carry the plugin (with a side plugin that row costs an
    evaluation of its own, one step's time, since its hidden state is needed)."""

    @property
    def plain(self) -> ModelSession:
        """The target without the plugin, for readings a plugin is trained on (a LoRA adapter, set
        on the session's context, stays: such a user's readings are not kept)."""
        return self.session

    def personalised_logits(self, logits: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """The plugin applied to plain rows (a LoRA adapter is in the context: its rows have it)."""
        return logits if self.side_plugin is None else self.side_plugin.apply(logits, hidden)

    def evaluate(self, tokens: Sequence[int], logit_rows: Sequence[int] = ()) -> np.ndarray:
        """ModelSession.evaluate with the plugin's logits (a fresh array when a side plugin applies)."""
        rows = list(logit_rows)
        session = self.session
        fits = len(session.tokens) + len(tokens) <= session.context_length
        if self.side_plugin is None or not rows or not fits:
            return session.evaluate(tokens, rows)  # raises ContextFull when it does not fit
        first = rows[0]
        if first > 0:
            session.evaluate(tokens[:first], [])
        logits, hidden = session.evaluate_with_hidden_states(tokens[first:], [row - first for row in rows])
        return self.side_plugin.apply(logits, hidden)

    def evaluate_with_hidden_states(
        self, tokens: Sequence[int], rows: Sequence[int], *, views: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        logits, hidden = self.session.evaluate_with_hidden_states(tokens, rows, views=views)
        if self.side_plugin is not None:
            logits = self.side_plugin.apply(logits, hidden)
        return logits, hidden

    def close(self) -> None:
        self.detach()
        self.session.close()

    def detach(self) -> ModelSession:
        """Take the plugin off (the LoRA adapter out of the context) and hand back the plain session."""
        if self._adapter is not None:
            llama_cpp = self.session._llama_cpp
            llama_cpp.llama_set_adapters_lora(self.session.llama_context, None, 0, None)
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
            self.session.truncate(0)
        self.side_plugin = None
        return self.session


def _attach_lora(session: ModelSession, path: Path):
    """Load a LoRA GGUF for the session's model and set it on the session's context, at scale 1."""
    llama_cpp = session._llama_cpp
    adapter = llama_cpp.llama_adapter_lora_init(session.llm.model, str(path).encode("utf-8"))
    if not adapter:
        raise PluginError(f"llama.cpp cannot apply the LoRA adapter {path.name} to {session.path.name}")
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(1.0)
    if llama_cpp.llama_set_adapters_lora(session.llama_context, adapters, 1, scales) != 0:
        llama_cpp.llama_adapter_lora_free(adapter)
        raise PluginError(f"llama.cpp could not set the LoRA adapter {path.name} on {session.path.name}")
    return adapter


def personalise(session: ModelSession, directory: Path) -> ModelSession | PersonalisedSession:
    """The session with the plugin found in a user's ``directory`` applied; the session itself without one."""
    kind = plugin_kind(directory)
    if kind is None:
        return session
    if kind == "side":
        personalised = PersonalisedSession(session, side_plugin=load_side_plugin(directory))
    else:
        personalised = PersonalisedSession(session, lora_path=directory / LORA_FILE)
    personalised.directory = directory
    return personalised
