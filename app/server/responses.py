"""OpenAI response shapes, with duetto's numbers beside them.

Every completion carries ``usage`` as OpenAI defines it (predicted outputs' accepted and rejected
tokens included), ``timings`` in llama.cpp's server's shape (``draft_n``, ``draft_n_accepted``
and the prompt and decoding rates: dashboards made for llama-server read them), and ``duetto``:
the reply's stats as ``duetto ask --json`` prints them, and a document answer's citations.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from duetto.app.server.requests import CompletionRequest
from duetto.engine.stats import ReplyStats

FINISH_REASONS = {"stop": "stop", "length": "length", "context": "length", "cancelled": "stop"}


@dataclass
class Outcome:
    """What a finished request produced."""

    text: str
    stats: ReplyStats
    extra: dict[str, Any] = field(default_factory=dict)
    """duetto's own numbers beyond the reply stats (a document answer's), and citations."""


def usage(stats: ReplyStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.tokens,
        "total_tokens": stats.prompt_tokens + stats.tokens,
        "prompt_tokens_details": {"cached_tokens": stats.prompt_tokens - stats.prompt_read_tokens},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "accepted_prediction_tokens": stats.prediction_accepted,
            "rejected_prediction_tokens": stats.prediction_rejected,
        },
    }


def timings(stats: ReplyStats) -> dict[str, Any]:
    """llama-server's ``timings``: the prompt phase is up to the first token, the rest decoding."""
    prompt_ms = stats.ttft_seconds * 1000
    predicted_ms = max(stats.seconds - stats.ttft_seconds, 0.0) * 1000
    read = stats.prompt_read_tokens
    decoded = max(stats.tokens - 1, 0)  # the first token comes with the prompt's evaluation
    return {
        "cache_n": stats.prompt_tokens - read,
        "prompt_n": read,
        "prompt_ms": round(prompt_ms, 3),
        "prompt_per_token_ms": round(prompt_ms / read, 3) if read else 0.0,
        "prompt_per_second": round(read / prompt_ms * 1000, 2) if prompt_ms and read else 0.0,
        "predicted_n": stats.tokens,
        "predicted_ms": round(predicted_ms, 3),
        "predicted_per_token_ms": round(predicted_ms / decoded, 3) if decoded else 0.0,
        "predicted_per_second": stats.tokens_per_second,
        "draft_n": stats.drafted,
        "draft_n_accepted": stats.accepted,
    }


def duetto_numbers(outcome: Outcome) -> dict[str, Any]:
    return {"stats": {**outcome.stats.as_dict(), **outcome.extra.get("stats", {})}, **outcome.extra.get("more", {})}


class Shapes:
    """The objects of one response: its id, creation time and model stay the same in every chunk."""

    def __init__(self, request: CompletionRequest) -> None:
        self.request = request
        chat = request.kind == "chat"
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.object = "chat.completion" if chat else "text_completion"
        self.created = int(time.time())

    def _head(self, object_name: str) -> dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.request.model}

    def completion(self, outcome: Outcome) -> dict[str, Any]:
        finish = FINISH_REASONS[outcome.stats.finish_reason]
        if self.request.kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": outcome.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": outcome.text, "logprobs": None, "finish_reason": finish}
        return {
            **self._head(self.object),
            "choices": [choice],
            "usage": usage(outcome.stats),
            "timings": timings(outcome.stats),
            "duetto": duetto_numbers(outcome),
        }

    def chunk(self, text: str | None = None, *, first: bool = False, outcome: Outcome | None = None) -> dict[str, Any]:
        """A streamed piece: text, or (with ``outcome``) the finish reason with the numbers."""
        finish = FINISH_REASONS[outcome.stats.finish_reason] if outcome is not None else None
        if self.request.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            chunk = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            chunk = {**self._head("text_completion"), "choices": [choice]}
        if self.request.include_usage:
            chunk["usage"] = None
        if outcome is not None:
            chunk["timings"] = timings(outcome.stats)
            chunk["duetto"] = duetto_numbers(outcome)
        return chunk

    def usage_chunk(self, outcome: Outcome) -> dict[str, Any]:
        """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
        object_name = "chat.completion.chunk" if self.request.kind == "chat" else "text_completion"
        return {**self._head(object_name), "choices": [], "usage": usage(outcome.stats)}


def event(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: a ``data:`` line and a blank line."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


DONE = event("[DONE]")
