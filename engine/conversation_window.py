"""A conversation whose cost per turn stays bounded however long it runs.

The prompt is the system turn (with the conversation's memory in it), then the recent
turns. By default the window is the whole context, so nothing is folded until it is
full. When the prompt outgrows ``window_tokens``, the oldest turns are folded into a
memory block: their prose compressed by the small model (as it compresses document
chunks), their code kept verbatim (engine/code_blocks.py), and the target's KV cache is
edited in place rather than re-read: the folded turns' cells are removed, the later ones
moved back, and the block evaluated where it goes. When the memory itself outgrows
``memory_tokens``, its oldest block shrinks step by step (code to its outline, prose
compressed again) and is dropped whole when it cannot shrink; code is never cut mid-block
nor pruned word by word. So the KV cache never holds more than about window + memory
tokens and a turn costs its own tokens plus, on the turns that fold, one block.
(MCSD's O(1)-memory argument applied to a chat: the state carried forward has a fixed size.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from duetto.engine.code_blocks import remembered_turns, shrunk_memory, without_oldest_part
from duetto.engine.model_session import ChatMessage, ModelSession

MEMORY_MARKER = "\x00duetto-conversation-memory\x00"
MEMORY_HEADING = "\n\nNotes on earlier turns of this conversation (prose compressed, code as it was):\n"
MEMORY_SHARE = 8
"""The memory of folded turns may hold up to this fraction (1/8) of the window."""


def window_sizes(context_length: int, window_tokens: int | None = None) -> tuple[int, int]:
    """(window tokens, memory tokens) for a target with ``context_length``: the window is the whole
    context unless a smaller one is asked for, so folding starts only when the context is full."""
    window = min(window_tokens or context_length, context_length)
    return window, window // MEMORY_SHARE


def reply_budget(max_tokens: int, context_length: int) -> int:
    """Tokens kept free for the reply: ``max_tokens``, but never more than a quarter of the context."""
    return min(max_tokens, context_length // 4)


@dataclass
class FoldReport:
    folded_messages: int
    block_tokens: int
    seconds: float


@dataclass
class ConversationWindow:
    session: ModelSession
    compress_text: Callable[[str], str]
    """Shortens text (the small model's compression); called only when turns are folded."""
    system_prompt: str
    window_tokens: int
    memory_tokens: int
    memory_texts: list[str] = field(default_factory=list)
    folded_messages: int = 0
    """How many of the conversation's messages (system excluded) live only in the memory now."""
    last_fold: FoldReport | None = None
    on_fold: Callable[[], None] | None = None
    """Called as a fold begins (a front-end says so: the small model reads the folded prose)."""

    def __post_init__(self) -> None:
        self._memory_blocks = [self._block_tokens(text) for text in self.memory_texts]

    @property
    def memory_length(self) -> int:
        return sum(len(block) for block in self._memory_blocks)

    def prompt_tokens(self, messages: Sequence[ChatMessage], reply_budget: int) -> list[int]:
        """The prompt for the next reply to ``messages`` (user and assistant turns, no system),
        folding old turns first when the window would overflow."""
        self.last_fold = None
        while True:
            prefix, after = self._pieces(messages[self.folded_messages :])
            fits = len(prefix) + self.memory_length + len(after) + reply_budget <= self.window_tokens
            if fits or len(messages) - self.folded_messages <= 2:
                return prefix + [token for block in self._memory_blocks for token in block] + after
            self._fold(messages, reply_budget)

    def fold_ahead(self, messages: Sequence[ChatMessage], reply_budget: int) -> None:
        """After a reply: fold now if the next turn would probably not fit (a quarter of the window
        for the next message), so that the fold's cost falls between turns, not in the next one's
        time to first token."""
        self.last_fold = None
        prefix, after = self._pieces(messages[self.folded_messages :])
        headroom = reply_budget + self.window_tokens // 4
        too_long = len(prefix) + self.memory_length + len(after) + headroom > self.window_tokens
        if too_long and len(messages) - self.folded_messages > 2:
            self._fold(messages, headroom)

    # --- folding ------------------------------------------------------------------------

    def _pieces(self, recent: Sequence[ChatMessage]) -> tuple[list[int], list[int]]:
        system: ChatMessage = {"role": "system", "content": self.system_prompt + MEMORY_HEADING + MEMORY_MARKER}
        return self.session.chat_prompt_around([system, *recent], MEMORY_MARKER)

    def _block_tokens(self, text: str) -> list[int]:
        return self.session.tokenize(text.strip() + "\n")

    def _fold(self, messages: Sequence[ChatMessage], reply_budget: int) -> None:
        started = time.perf_counter()
        if self.on_fold is not None:
            self.on_fold()
        recent = list(messages[self.folded_messages :])
        count = self._messages_to_fold(recent, reply_budget)
        block_text = remembered_turns(recent[:count], self.compress_text)
        block = self._block_tokens(block_text)
        prefix, after_before = self._pieces(recent)
        _, after_now = self._pieces(recent[count:])
        session = self.session
        base = len(prefix) + self.memory_length
        holds_window = session.tokens[:base] == prefix + [t for b in self._memory_blocks for t in b]
        if holds_window:
            span = _folded_span(after_before, after_now)
            if span is not None and session.tokens[base : base + span[1]] == after_before[: span[1]]:
                session.remove_span(base + span[0], base + span[1])
            else:  # the cache does not hold the folded turns as expected: keep only what is sure
                session.truncate(base)
            session.insert_tokens(block, at=base)
        self._memory_blocks.append(block)
        self.memory_texts.append(block_text)
        self.folded_messages += count
        while self.memory_length > self.memory_tokens:
            self._shrink_memory(len(prefix), holds_window)
        self.last_fold = FoldReport(count, len(block), time.perf_counter() - started)

    def _messages_to_fold(self, recent: list[ChatMessage], reply_budget: int) -> int:
        """Whole exchanges from the oldest on, until the rest fits half the window; the latest
        exchange always stays."""
        count = 0
        while count + 2 < len(recent):
            count += 2
            _, after = self._pieces(recent[count:])
            if len(after) + reply_budget <= self.window_tokens // 2:
                break
        return count

    def _shrink_memory(self, prefix_length: int, edit_cache: bool) -> None:
        """One step toward fitting ``memory_tokens``, oldest first: shrink the oldest block (code to
        its outline, prose compressed again); else drop it whole; the last block left loses its
        oldest line of prose or code block, so the bound holds whatever the text."""
        oldest = self.memory_texts[0]
        smaller = shrunk_memory(oldest, self.compress_text)
        if smaller is not None and len(self._block_tokens(smaller)) < len(self._memory_blocks[0]):
            self._replace_oldest_blocks(1, [smaller], prefix_length, edit_cache)
        elif len(self._memory_blocks) > 1:
            self._replace_oldest_blocks(1, [], prefix_length, edit_cache)
        else:
            rest = without_oldest_part(oldest)
            self._replace_oldest_blocks(1, [rest] if rest.strip() else [], prefix_length, edit_cache)

    def _replace_oldest_blocks(self, count: int, texts: list[str], prefix_length: int, edit_cache: bool) -> None:
        """The ``count`` oldest memory blocks become ``texts`` (none: they are dropped)."""
        blocks = [self._block_tokens(text) for text in texts]
        if edit_cache:
            old_length = sum(len(old) for old in self._memory_blocks[:count])
            self.session.remove_span(prefix_length, prefix_length + old_length)
            self.session.insert_tokens([token for block in blocks for token in block], at=prefix_length)
        self._memory_blocks[:count] = blocks
        self.memory_texts[:count] = list(texts)


def _folded_span(before: list[int], after: list[int]) -> tuple[int, int] | None:
    """[start, end) of ``before`` whose removal leaves ``after``, at the first place it can be:
    where the folded turns begin (a kept turn that repeats a folded one must not move it)."""
    removed = len(before) - len(after)
    if removed < 0:
        return None
    for start in range(len(after) + 1):
        if before[start + removed :] == after[start:]:
            return start, start + removed
        if start == len(after) or before[start] != after[start]:
            return None  # the text before the removed span must be common to both
    return None
