"""Long chats in the chat app: each conversation's window and its memory, kept in SQLite.

A mixin of DuettoApp. The window (engine/conversation_window.py) lives with the engine,
in the generate worker; when it folds old turns into memory, the worker posts the new
memory and the UI thread stores it, so a restart continues from the same memory.
"""

from __future__ import annotations

from textual.message import Message

from duetto.engine.conversation_window import ConversationWindow, window_sizes
from duetto.engine.decoder import Decoder
from duetto.store.conversation_memory import ConversationMemory, save_memory


class ConversationFolded(Message):
    def __init__(self, conversation_id: int, memory: ConversationMemory, tokens: int) -> None:
        super().__init__()
        self.conversation_id, self.memory, self.tokens = conversation_id, memory, tokens


class WindowedChats:
    """Needs from the app: ``db``, ``config`` (its ``window_tokens``), ``reader()`` (the document
    reader) and ``post_message``."""

    def conversation_window(
        self,
        decoder: Decoder,
        conversation_id: int,
        system_prompt: str,
        memory: ConversationMemory | None,
        message_ids: list[int],
    ) -> ConversationWindow:
        """The conversation's window on this engine, restored from its stored memory once."""
        windows: dict[tuple[int, int], ConversationWindow] = self.__dict__.setdefault("_windows", {})
        key = (id(decoder), conversation_id)
        if key not in windows:
            folded = 0
            if memory is not None and memory.through_message_id in message_ids:
                folded = message_ids.index(memory.through_message_id) + 1
            window_tokens, memory_tokens = window_sizes(decoder.target.context_length, self.config.window_tokens)
            windows[key] = ConversationWindow(
                decoder.target,
                lambda text: self.reader()[0].compress_text(text),
                system_prompt,
                window_tokens=window_tokens,
                memory_tokens=memory_tokens,
                memory_texts=list(memory.texts) if folded else [],
                folded_messages=folded,
            )
        return windows[key]

    def report_fold(self, window: ConversationWindow, conversation_id: int, message_ids: list[int]) -> None:
        """From the worker: the window folded turns; the UI thread stores the new memory."""
        if window.last_fold is not None and window.folded_messages:
            memory = ConversationMemory(list(window.memory_texts), message_ids[window.folded_messages - 1])
            self.post_message(ConversationFolded(conversation_id, memory, window.memory_length))

    def on_conversation_folded(self, message: ConversationFolded) -> None:
        save_memory(self.db, message.conversation_id, message.memory, message.tokens)
