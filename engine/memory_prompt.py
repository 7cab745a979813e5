"""Putting stored document memory in front of a question without re-reading it.

The prompt is ``prefix + block_1 + ... + block_n + suffix``: the prefix is the chat
template's system turn and the start of the user turn, each block is one chunk's text,
the suffix is the question and the assistant's cue. Every block is evaluated once,
right after the prefix and nothing else, and its KV cells are saved; later prompts load
the saved cells and move them into place (block attention: blocks see the prefix and
themselves, the question sees everything). So a block costs the same whichever
question picks it and in whatever order, and a later question on the same chunks
costs only its own tokens.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_training import TargetReading, read_in_context


@dataclass(frozen=True)
class MemoryBlock:
    key: str
    """Identifies the block's text (e.g. chunk id and variant) for the state cache."""
    tokens: list[int]
    text_start: int = 0
    """Where the block's own text begins, after its label (``[notes#3]``)."""


class StateCache(Protocol):
    def load(self, block: MemoryBlock, prefix_sha256: str) -> bytes | None:
        """The saved state of ``block`` behind the prefix with this digest, or None."""

    def save(self, block: MemoryBlock, prefix_sha256: str, state: bytes) -> None: ...


class BlockReadings(Protocol):
    """Who keeps the target's reading of a block's text as the block is read (a user's plugin
    learns from it later without reading it again: app/core/plugins.py)."""

    def wants(self, block: MemoryBlock) -> bool: ...

    def receive(self, block: MemoryBlock, reading: TargetReading) -> None: ...


@dataclass(frozen=True)
class PreparedMemory:
    prompt_tokens: list[int]
    evaluated_tokens: int
    """Prefix and block tokens the model had to evaluate now (the suffix is left to the decoder)."""
    loaded_tokens: int
    """Block tokens loaded from saved states instead."""
    seconds: float


def prefix_digest(tokens: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, tokens)).encode()).hexdigest()


def prepare_memory(
    session: ModelSession,
    prefix: list[int],
    blocks: Sequence[MemoryBlock],
    suffix: list[int],
    cache: StateCache,
    readings: BlockReadings | None = None,
) -> PreparedMemory:
    """Leave ``session`` holding prefix and blocks; returns the whole prompt for the decoder.
    ``readings`` gets the reading of the blocks it wants that are read now."""
    started = time.perf_counter()
    digest = prefix_digest(prefix)
    evaluated = 0
    kept = session.common_prefix_length(prefix)
    session.truncate(kept)
    if kept < len(prefix):
        session.evaluate(prefix[kept:], [])
        evaluated += len(prefix) - kept
    states: list[bytes] = []
    loaded = 0
    for block in blocks:
        state = cache.load(block, digest)
        if state is None:
            state = _read_block(session, len(prefix), block, digest, cache, readings)
            evaluated += len(block.tokens)
        else:
            loaded += len(block.tokens)
        states.append(state)
    session.truncate(len(prefix))
    for block, state in zip(blocks, states, strict=True):
        session.append_span(state, block.tokens, len(prefix))
    prompt = prefix + [token for block in blocks for token in block.tokens] + suffix
    return PreparedMemory(prompt, evaluated, loaded, time.perf_counter() - started)


def save_block_states(
    session: ModelSession,
    prefix: list[int],
    blocks: Sequence[MemoryBlock],
    cache: StateCache,
    on_block: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    readings: BlockReadings | None = None,
) -> int:
    """Read each block behind the prefix now and save its state, so that later prompts only
    load it; ``on_block(done)`` after each. Returns how many blocks were saved: fewer than
    given when ``should_cancel`` stopped it (each state is saved as soon as it is made).
    ``readings`` gets the reading of the blocks it wants.
    """
    saved = 0
    digest = prefix_digest(prefix)
    kept = session.common_prefix_length(prefix)
    session.truncate(kept)
    if kept < len(prefix):
        session.evaluate(prefix[kept:], [])
    for block in blocks:
        if should_cancel and should_cancel():
            break
        _read_block(session, len(prefix), block, digest, cache, readings)
        saved += 1
        if on_block:
            on_block(saved)
    session.truncate(len(prefix))
    return saved


def _read_block(
    session: ModelSession,
    prefix_length: int,
    block: MemoryBlock,
    digest: str,
    cache: StateCache,
    readings: BlockReadings | None = None,
) -> bytes:
    """Evaluate ``block`` right behind the prefix (and nothing else) and save its cells; when
    ``readings`` wants the block, keep the plain target's reading of its text on the way (it costs
    the output projection on the block's rows: docs/PLUGINS.md)."""
    session.truncate(prefix_length)
    if readings is not None and readings.wants(block) and block.text_start < len(block.tokens) - 1:
        rows = range(max(block.text_start - 1, 0), len(block.tokens) - 1)  # row i predicts token i + 1
        readings.receive(block, read_in_context(session.plain, block.tokens, rows).reading)
    else:
        session.evaluate(block.tokens, [])
    state = session.save_span(prefix_length, prefix_length + len(block.tokens))
    cache.save(block, digest, state)
    return state
