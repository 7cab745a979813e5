"""The numbers that travel with every reply."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

Mode = Literal["target", "exact", "fast"]
MODES: tuple[Mode, ...] = get_args(Mode)
"""Every decoding mode (engine/decoder.py says what each does); choices everywhere derive from it."""
FinishReason = Literal["stop", "length", "context", "cancelled"]


@dataclass(frozen=True)
class ReplyStats:
    prompt_tokens: int
    tokens: int
    seconds: float
    tokens_per_second: float
    ttft_seconds: float
    drafted: int
    accepted: int
    target_calls: int
    mode: Mode | None
    """None when a remote server decoded the reply: it drafts (or not) as it is set up to."""
    drafter: str
    finish_reason: FinishReason
    prompt_read_tokens: int = 0
    """Tokens of the prompt the target read for this reply; the rest were in its cache already."""
    prediction_accepted: int = 0
    """Tokens drafted from the caller's prediction that the target accepted."""
    prediction_rejected: int = 0
    """Tokens drafted from the caller's prediction that the target rejected (verified for nothing)."""
    server_cached_tokens: int = 0
    """With a remote target: prompt tokens the server took from its own prompt cache."""
    error: str | None = None
    """Why the reply stopped short when something failed after it began (a remote server dying
    mid-reply): what was written is kept, and marked with this."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LiveRate:
    """The decoding rate while a reply is written, counted as ``ReplyStats.tokens_per_second`` is:
    from the first token on, so that reading the prompt or folding old turns does not count."""

    def __init__(self) -> None:
        self._first: tuple[float, int] | None = None

    def update(self, tokens: int) -> float | None:
        """Tokens per second now that the reply has ``tokens``; None until two moments are known."""
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, tokens)
            return None
        first_at, first_tokens = self._first
        return (tokens - first_tokens) / (now - first_at) if tokens > first_tokens and now > first_at else None
