"""The numbers that travel with every reply."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Mode = Literal["target", "exact", "fast"]
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
    mode: Mode
    drafter: str
    finish_reason: FinishReason

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
