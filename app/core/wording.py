"""Small rules for words shown to a user, kept in one place so every front-end says things alike."""

from __future__ import annotations


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
