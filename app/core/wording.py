"""Small rules for words shown to a user, kept in one place so every front-end says things alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``1 chunk``, ``2 chunks``, ``1,024 tokens``."""
    return f"{count:,} {noun if count == 1 else plural_noun or noun + 's'}"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters with an
    ellipsis when cut (a single word longer than ``limit`` is cut inside it: there is no better place)."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:-") + "…"


UNFINISHED_REPLIES = {
    "cancelled": "stopped before its end",
    "length": "cut at the token limit",
    "context": "cut: the context window was full",
}
"""How a reply that did not end by itself ended, by its finish reason."""


def unfinished_reply(stats: Mapping[str, Any] | None) -> str:
    """A stored reply's stats, said in a few words when it did not end by itself ("" when it
    did): the chat app and an export say it alike (read later, a cut reply looks like a whole,
    odd answer). A remote target that broke mid-reply is said by its error."""
    if not isinstance(stats, Mapping):
        return ""
    if stats.get("error"):
        return f"{stats['error']}: what it wrote is kept"
    return UNFINISHED_REPLIES.get(str(stats.get("finish_reason")), "")
