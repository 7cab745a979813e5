"""Cutting a document into chunks of about the same token count, at sentence boundaries.

A chunk is what retrieval picks and what a KV state is saved for, so it should hold a
few complete sentences: small enough that a question's context can take several,
large enough that a fact keeps its surroundings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CHUNK_TOKENS = 160

# A sentence ends at . ! ? (with closing quotes or brackets) before whitespace, or at a blank line.
_SEGMENT = re.compile(r".+?(?:[.!?][\"'”’)\]]*(?=\s)|\n[ \t]*\n|$)", re.S)
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class TextChunk:
    text: str
    token_start: int
    token_end: int


def split_into_chunks(
    text: str, count_tokens: Callable[[str], int], target_tokens: int = DEFAULT_CHUNK_TOKENS
) -> list[TextChunk]:
    """Greedy packing of sentences into chunks of at most ``target_tokens`` (a longer sentence
    is cut between words); token spans count each chunk's own tokens, end to end."""
    pieces: list[str] = []
    for match in _SEGMENT.finditer(text):
        segment = match.group(0)
        if not segment.strip():
            continue
        if count_tokens(segment) <= target_tokens:
            pieces.append(segment)
        else:
            pieces.extend(cut_between_words(segment, count_tokens, target_tokens))
    chunks: list[TextChunk] = []
    current = ""
    current_tokens = 0
    position = 0

    def flush() -> None:
        nonlocal current, current_tokens, position
        chunk_text = current.strip()
        if chunk_text:
            tokens = count_tokens(chunk_text)
            chunks.append(TextChunk(chunk_text, position, position + tokens))
            position += tokens
        current, current_tokens = "", 0

    for piece in pieces:
        piece_tokens = count_tokens(piece)
        if current and current_tokens + piece_tokens > target_tokens:
            flush()
        current += piece
        current_tokens += piece_tokens
    flush()
    return chunks


def cut_between_words(segment: str, count_tokens: Callable[[str], int], target_tokens: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for word in _WORD.findall(segment):
        if current and count_tokens(current + word) > target_tokens:
            parts.append(current)
            current = ""
        current += word
    if current:
        parts.append(current)
    return parts
