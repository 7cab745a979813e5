"""A conversation whose cost per turn stays bounded however long it runs.

The prompt is the system turn (with the conversation's memory in it), then the recent
turns. When the prompt outgrows ``window_tokens``, the oldest turns are folded: the
small model compresses them (as it compresses document chunks) into a memory block,
and the target's KV cache is edited in place rather than re-read: the folded turns'
cells are removed, the later ones moved back, and the block evaluated where it goes.
When the memory itself outgrows ``memory_tokens``, its two oldest blocks are compressed
again into one. So the KV cache never holds more than about window + memory tokens
and a turn costs its own tokens plus, on the turns that fold, one short block.
(MCSD's O(1)-memory argument applied to a chat: the state carried forward has a fixed size.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from duetto.engine.model_session import ChatMessage, ModelSession

MEMORY_MARKER = "\x00duetto-conversation-memory\x00"
MEMORY_HEADING = "\n\nNotes on earlier turns of this conversation (compressed):\n"
DEFAULT_WINDOW_TOKENS = 1536
DEFAULT_MEMORY_TOKENS = 384


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
    window_tokens: int = DEFAULT_WINDOW_TOKENS
    memory_tokens: int = DEFAULT_MEMORY_TOKENS
    memory_texts: list[str] = field(default_factory=list)
    folded_messages: int = 0
    """How many of the conversation's messages (system excluded) live only in the memory now."""
    last_fold: FoldReport | None = None

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
        recent = list(messages[self.folded_messages :])
        count = self._messages_to_fold(recent, reply_budget)
        folded_text = "\n".join(f"{message['role']}: {message['content']}" for message in recent[:count])
        block_text = self.compress_text(folded_text)
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
            if len(self._memory_blocks) > 1:
                self._merge_oldest_blocks(len(prefix), holds_window)
            else:
                self._trim_only_block(len(prefix), holds_window)
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

    def _merge_oldest_blocks(self, prefix_length: int, edit_cache: bool) -> None:
        merged_text = self.compress_text(self.memory_texts[0] + "\n" + self.memory_texts[1])
        self._replace_oldest_blocks(2, merged_text, prefix_length, edit_cache)

    def _trim_only_block(self, prefix_length: int, edit_cache: bool) -> None:
        """What compression cannot shrink further (names and numbers are kept) loses its oldest
        words instead: the bound on memory holds whatever the text."""
        keep_fraction = 0.9 * self.memory_tokens / max(1, self.memory_length)
        self._replace_oldest_blocks(
            1, _drop_oldest_words(self.memory_texts[0], keep_fraction), prefix_length, edit_cache
        )

    def _replace_oldest_blocks(self, count: int, text: str, prefix_length: int, edit_cache: bool) -> None:
        block = self._block_tokens(text)
        if edit_cache:
            old_length = sum(len(old) for old in self._memory_blocks[:count])
            self.session.remove_span(prefix_length, prefix_length + old_length)
            self.session.insert_tokens(block, at=prefix_length)
        self._memory_blocks[:count] = [block]
        self.memory_texts[:count] = [text]


def _drop_oldest_words(text: str, keep_fraction: float) -> str:
    words = text.split()
    return " ".join(words[len(words) - max(1, int(len(words) * keep_fraction)) :])


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
