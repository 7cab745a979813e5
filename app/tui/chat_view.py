"""The scrolling log of a conversation: one Markdown block per message, the reply streamed in."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownStream


class MessageBlock(Markdown):
    """One message; the assistant's reply grows through a MarkdownStream while it is generated."""

    DEFAULT_CSS = """
    MessageBlock { margin: 0 1 1 1; padding: 0 1; }
    MessageBlock.user { background: $boost; border-left: thick $accent; }
    MessageBlock.assistant { border-left: thick $success; }
    """

    def __init__(self, role: str, text: str = "") -> None:
        super().__init__(text, classes=role)
        self.role = role
        self.text = text


class ChatView(VerticalScroll):
    DEFAULT_CSS = """
    ChatView { height: 1fr; }
    ChatView .empty { color: $text-muted; margin: 1 2; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stream: MarkdownStream | None = None
        self._reply: MessageBlock | None = None

    async def show_messages(self, messages: list[tuple[str, str]]) -> None:
        """Replace the log with ``messages`` as (role, text) pairs."""
        await self.remove_children()
        if not messages:
            await self.mount(Static("Ask anything. Enter sends, Ctrl+J adds a line, F1 shows every key.",
                                    classes="empty"))  # fmt: skip
        for role, text in messages:
            await self.mount(MessageBlock(role, text))
        self.scroll_end(animate=False)

    async def add_message(self, role: str, text: str) -> MessageBlock:
        for placeholder in self.query(".empty"):
            await placeholder.remove()
        block = MessageBlock(role, text)
        await self.mount(block)
        self.scroll_end(animate=False)
        return block

    async def begin_reply(self) -> None:
        self._reply = await self.add_message("assistant", "")
        self._stream = Markdown.get_stream(self._reply)

    async def append_reply(self, delta: str) -> None:
        if self._stream is None or self._reply is None:
            return
        self._reply.text += delta
        await self._stream.write(delta)
        self.scroll_end(animate=False)

    async def end_reply(self) -> str:
        """Finish the streamed reply; returns its text."""
        text = self._reply.text if self._reply else ""
        if self._stream is not None:
            await self._stream.stop()
        self._stream, self._reply = None, None
        return text

    def last_reply_text(self) -> str | None:
        replies = [block for block in self.query(MessageBlock) if block.role == "assistant"]
        return replies[-1].text if replies else None
