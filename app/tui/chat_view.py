"""The scrolling log of a conversation: the user's messages as written, replies as Markdown
streamed in.

A reply written in this session also knows which source wrote each piece (its spans); with
``show_sources`` on, such a reply is shown as a coloured SourceText in place of its Markdown.

Messages take the focus (Shift+Tab from the prompt box): a focused message is copied with ``c``,
one of its code blocks with ``1``-``9``, and the user's own is edited with ``e``; a click on a
code block copies it. They only ask: the app copies and edits (CopyRequested, EditRequested).
"""

from __future__ import annotations

import asyncio

from textual import events
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownFence, MarkdownStream

from duetto.app.tui.draft_sources import SourceText, Spans
from duetto.engine.code_blocks import fenced_code


class CopyRequested(Message):
    """Copy ``text`` (``what`` it is, for the notice: "reply", "code block 2")."""

    def __init__(self, text: str, what: str) -> None:
        super().__init__()
        self.text, self.what = text, what


class EditRequested(Message):
    """The user wants to edit their message ``message_id`` (None: not saved yet)."""

    def __init__(self, message_id: int | None, text: str) -> None:
        super().__init__()
        self.message_id, self.text = message_id, text


class StreamingFence(MarkdownFence):
    """A code block that is highlighted once its reply is complete.

    Textual rebuilds the last block on every streamed piece, and highlighting a growing code
    block each time held the UI thread for up to ~95 ms (measured with a 40-function block),
    which is how long a key press waited. While the reply streams the code shows unhighlighted.

    A line wider than the window scrolls sideways, with a scrollbar under the block: Textual's
    fence hides that scrollbar, and a cut line looked whole (`return s == s[::-1]` at 80 columns
    read as `return s == s`).
    """

    DEFAULT_CSS = """
    StreamingFence { overflow-x: auto; scrollbar-size-horizontal: 1; }
    """

    def __init__(self, markdown: Markdown, token, code: str) -> None:
        self.plain = getattr(markdown, "streaming", False)
        """Shown without highlighting: its reply is still streaming."""
        super().__init__(markdown, token, code)

    def highlight(self, code: str, language: str, ansi: bool = False, dark: bool = False) -> Content:  # type: ignore[override]
        if self.plain:
            return Content(code)
        return MarkdownFence.highlight(code, language, ansi=ansi, dark=dark)

    def highlight_now(self) -> None:
        self.plain = False
        self.notify_style_update()

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(CopyRequested(self.code, "code block"))


MESSAGE_BINDINGS = [
    Binding("c", "copy_message", "Copy", id="copy_message"),
]


class MessageKeys:
    """What a focused message does with its keys (a mixin for the two kinds of message; not a
    Widget itself, whose default styles would then outrank the message's own: every message
    became as tall as the screen)."""

    text: str
    role: str
    message_id: int | None

    def action_copy_message(self) -> None:
        self.post_message(CopyRequested(self.text, "your message" if self.role == "user" else "reply"))

    def on_key(self, event: events.Key) -> None:
        if event.character and event.character in "123456789" and self.has_focus:
            event.stop()
            blocks = fenced_code(self.text)
            number = int(event.character)
            if number <= len(blocks):
                self.post_message(CopyRequested(blocks[number - 1], f"code block {number} of {len(blocks)}"))
            else:
                self.notify(f"This message has {len(blocks)} code block{'' if len(blocks) == 1 else 's'}.")


class MessageBlock(Markdown, MessageKeys, can_focus=True):
    """One message; the assistant's reply grows through a MarkdownStream while it is generated."""

    BINDINGS = MESSAGE_BINDINGS

    BLOCKS = {**Markdown.BLOCKS, "fence": StreamingFence, "code_block": StreamingFence}
    streaming = False
    """True while the reply is being written: code blocks wait to be highlighted."""

    DEFAULT_CSS = """
    MessageBlock { margin: 0 1 1 1; padding: 0 1; }
    MessageBlock.assistant { border-left: thick $success; }
    MessageBlock:focus { background: $warning 15%; border-left: outer $warning; }
    """

    def __init__(self, role: str, text: str = "", spans: Spans | None = None, message_id: int | None = None) -> None:
        super().__init__(text, classes=role)
        self.role = role
        self.text = text
        self.message_id = message_id
        self.spans = spans
        """(source, text) pieces of a reply written in this session; None when not known."""
        self.source_view: SourceText | None = None


class UserMessage(Static, MessageKeys, can_focus=True):
    """One message of the user's, shown exactly as typed or pasted: pasted code keeps its lines,
    indentation and backslashes (as Markdown they would be joined and eaten)."""

    BINDINGS = [*MESSAGE_BINDINGS, Binding("e", "edit_message", "Edit", id="edit_message")]
    DEFAULT_CSS = """
    UserMessage { margin: 0 1 1 1; padding: 0 1; background: $boost; border-left: thick $accent; }
    UserMessage:focus { background: $warning 15%; border-left: outer $warning; }
    """

    def __init__(self, text: str, message_id: int | None = None) -> None:
        super().__init__(Content(text), classes="user")
        self.role = "user"
        self.text = text
        self.message_id = message_id

    def action_edit_message(self) -> None:
        self.post_message(EditRequested(self.message_id, self.text))


class ChatView(VerticalScroll):
    DEFAULT_CSS = """
    ChatView { height: 1fr; }
    ChatView .empty { color: $text-muted; margin: 1 2; }
    ChatView .note { color: $warning; margin: 0 2 1 2; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stream: MarkdownStream | None = None
        self._reply: MessageBlock | None = None
        self.show_sources = False
        """Show replies whose spans are known coloured by source instead of as Markdown."""
        self.replacing = asyncio.Lock()

    async def show_messages(
        self,
        messages: list[tuple[str, str, Spans | None, int | None]],
        notes: dict[int, str] | None = None,
        unless_shown: bool = False,
    ) -> None:
        """Replace the log with ``messages`` as (role, text, spans or None, message id), each
        followed by its note in ``notes`` (by message id) if it has one; with ``unless_shown``, not
        when the same messages are already shown.

        One at a time: two that interleave their awaits remove, remove, mount, mount, and show
        every message twice. ``unless_shown`` is decided in turn too: a look at other processes'
        writes that found the view out of date may have waited for a rebuild that brought it up to
        date, and would otherwise rebuild it again under a reader's eyes."""
        async with self.replacing:
            if unless_shown and [message.message_id for message in self.messages()] == [
                message_id for *_, message_id in messages
            ]:
                return
            await self.remove_children()
            if not messages:
                await self.mount(Static("Ask anything. Enter sends, Ctrl+J adds a line, F1 shows every key.",
                                        classes="empty"))  # fmt: skip
            for role, text, spans, message_id in messages:
                await self._mount_message(role, text, spans, message_id)
                if notes and message_id in notes:
                    await self.mount(Static(Content(notes[message_id]), classes="note"))
            self.scroll_end(animate=False)

    async def add_message(
        self, role: str, text: str, spans: Spans | None = None, message_id: int | None = None
    ) -> MessageBlock | UserMessage:
        for placeholder in self.query(".empty"):
            await placeholder.remove()
        block = await self._mount_message(role, text, spans, message_id)
        self.scroll_end(animate=False)
        return block

    async def remove_from(self, message: Widget) -> None:
        """Remove ``message`` and everything shown after it (a turn edited or written again)."""
        children = list(self.children)
        await self.remove_children(children[children.index(message) :])

    async def remove_after(self, message: Widget) -> None:
        """Remove everything shown after ``message`` (the notes under a reply being continued),
        but its own coloured view."""
        children = list(self.children)
        own_view = getattr(message, "source_view", None)
        await self.remove_children(
            [child for child in children[children.index(message) + 1 :] if child is not own_view]
        )

    def set_message_ids(self, stored: list[tuple[str, int]]) -> bool:
        """Give the shown messages the ids of the stored ones, (role, id) oldest first, after a turn
        is saved; False (and nothing changed) when what is shown is not what is stored."""
        shown = self.messages()
        if [message.role for message in shown] != [role for role, _ in stored]:
            return False
        for message, (_, message_id) in zip(shown, stored, strict=True):
            message.message_id = message_id
        return True

    async def add_note(self, text: str) -> None:
        """A line from duetto itself under the reply (a reply cut at the token limit, say)."""
        await self.mount(Static(Content(text), classes="note"))
        self.scroll_end(animate=False)

    async def _mount_message(
        self, role: str, text: str, spans: Spans | None, message_id: int | None = None
    ) -> MessageBlock | UserMessage:
        if role == "user":
            message = UserMessage(text, message_id)
            await self.mount(message)
            return message
        block = MessageBlock(role, text, spans, message_id)
        if self.show_sources and spans is not None:  # the block and its coloured view appear together
            block.source_view = SourceText(spans)
            block.display = False
            await self.mount(block, block.source_view)
        else:
            await self.mount(block)
        return block

    async def set_show_sources(self, show: bool) -> None:
        self.show_sources = show
        for block in list(self.query(MessageBlock)):
            await self._show_block(block)

    async def _show_block(self, block: MessageBlock) -> None:
        """Show the block's Markdown, or its coloured view when that is on and its spans are known."""
        coloured = self.show_sources and block.spans is not None
        if coloured and block.source_view is None:
            block.source_view = SourceText(block.spans)
            await self.mount(block.source_view, after=block)
        block.display = not coloured
        if block.source_view is not None:
            block.source_view.display = coloured
            block.source_view.refresh_spans()

    async def begin_reply(self) -> None:
        self._reply = await self.add_message("assistant", "", spans=[])
        assert isinstance(self._reply, MessageBlock)
        self._reply.streaming = True
        self._stream = Markdown.get_stream(self._reply)

    async def resume_reply(self) -> bool:
        """Stream on into the last reply (continuing it); False when the last message is not a reply."""
        messages = self.messages()
        if not messages or not isinstance(messages[-1], MessageBlock):
            return False
        self._reply = messages[-1]
        await self.remove_after(self._reply)
        if self._reply.spans is None:
            self._reply.spans = [("target", self._reply.text)]
        self._reply.streaming = True
        self._stream = Markdown.get_stream(self._reply)
        return True

    async def append_reply(self, delta: str, spans: Spans = ()) -> None:
        """Add ``delta`` to the reply; ``spans`` are its pieces by source (their text joined is ``delta``)."""
        if self._stream is None or self._reply is None:
            return
        self._reply.text += delta
        self._reply.spans.extend(spans)
        await self._stream.write(delta)
        if self._reply.source_view is not None and self._reply.source_view.display:
            self._reply.source_view.refresh_spans()
        self.scroll_end(animate=False)

    async def end_reply(self) -> tuple[str, Spans]:
        """Finish the streamed reply; returns its text and its spans."""
        text, spans = (self._reply.text, self._reply.spans) if self._reply else ("", [])
        if self._stream is not None:
            await self._stream.stop()
        if self._reply is not None:
            self._reply.streaming = False
            for fence in self._reply.query(StreamingFence):
                fence.highlight_now()
        self._stream, self._reply = None, None
        return text, spans

    def messages(self) -> list[MessageBlock | UserMessage]:
        """Every message shown, oldest first (each has ``role`` and ``text``)."""
        return [child for child in self.children if isinstance(child, MessageBlock | UserMessage)]

    def last_reply_text(self) -> str | None:
        replies = [block for block in self.query(MessageBlock) if block.role == "assistant"]
        return replies[-1].text if replies else None

    def last_user_message(self) -> UserMessage | None:
        messages = [message for message in self.messages() if isinstance(message, UserMessage)]
        return messages[-1] if messages else None
