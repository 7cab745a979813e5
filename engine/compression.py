"""Question-independent compression of a chunk: keep the words that carry information.

LLMLingua's idea without its trained parts: the small model's surprisal of each token
(-log p under the model, given the text before it) says how much that token tells a
reader who already knows the language. Whole words are kept or dropped, never parts,
and words with digits or capitals (numbers, names, places) are always kept, whatever
the model expected, since a wrong number is worse than a longer memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

DEFAULT_KEEP_RATIO = 0.6
_WORD = re.compile(rb"\S+")


def is_protected(word: bytes) -> bool:
    """Numbers, names and anything capitalised or mixed with digits."""
    text = word.decode("utf-8", errors="ignore")
    return any(character.isdigit() or character.isupper() for character in text)


def compress(
    token_bytes: Sequence[bytes], surprisals: Sequence[float], keep_ratio: float = DEFAULT_KEEP_RATIO
) -> tuple[str, int]:
    """(compressed text, tokens kept): at most about ``keep_ratio`` of the tokens, protected
    words kept regardless, the rest by their most surprising token."""
    text = b"".join(token_bytes)
    token_ends = np.cumsum([len(piece) for piece in token_bytes])
    token_starts = token_ends - np.array([len(piece) for piece in token_bytes])
    words = [(match.start(), match.end()) for match in _WORD.finditer(text)]
    if not words:
        return "", 0
    scores: list[float] = []
    word_tokens: list[int] = []
    for start, end in words:
        first = int(np.searchsorted(token_ends, start, side="right"))
        last = int(np.searchsorted(token_starts, end, side="left"))
        covering = range(first, max(first + 1, last))
        scores.append(max(surprisals[index] for index in covering if index < len(surprisals)))
        word_tokens.append(len(covering))
    budget = keep_ratio * sum(word_tokens)
    kept = [True] * len(words)
    kept_tokens = sum(word_tokens)
    for index in sorted(range(len(words)), key=lambda index: scores[index]):
        if kept_tokens <= budget:
            break
        if is_protected(text[words[index][0] : words[index][1]]):
            continue
        kept[index] = False
        kept_tokens -= word_tokens[index]
    compressed = b" ".join(text[start:end] for (start, end), keep in zip(words, kept, strict=True) if keep)
    return compressed.decode("utf-8", errors="replace"), kept_tokens
