"""The conversation list: filter by title, pick one to open it."""

from __future__ import annotations

import asyncio

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView, Static

from duetto.app.tui.keys_in_order import OrderedInput
from duetto.store.conversations import Conversation


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(conversation.title))
        self.conversation = conversation


class Sidebar(Vertical):
    DEFAULT_CSS = """
    Sidebar { width: 32; border-right: solid $panel-lighten-2; }
    Sidebar Input { margin: 0 0 1 0; }
    Sidebar ListView { height: 1fr; }
    Sidebar #no-match { color: $text-muted; margin: 0 1; }
    """

    class Selected(Message):
        def __init__(self, conversation: Conversation) -> None:
            super().__init__()
            self.conversation = conversation

    class FilterChanged(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class SearchSubmitted(Message):
        """Enter in the search box: open the most recent chat matching what the box holds."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        yield OrderedInput(placeholder="Search chats (Ctrl+F)", id="conversation-filter")
        no_match = Static("", id="no-match")
        no_match.display = False
        yield no_match
        yield ListView(id="conversation-list")

    def __init__(self, *children, **options) -> None:
        super().__init__(*children, **options)
        self.showing = asyncio.Lock()

    async def show(self, conversations: list[Conversation], current_id: int | None, search: str = "") -> None:
        """Replace the list. One at a time: two refreshes (a rename and the look at other
        processes' writes) that interleave their awaits clear, clear, extend, extend, and list
        every chat twice (seen in CI)."""
        async with self.showing:
            listing = self.query_one(ListView)
            await listing.clear()
            await listing.extend([ConversationItem(conversation) for conversation in conversations])
            for index, conversation in enumerate(conversations):
                if conversation.id == current_id:
                    listing.index = index
            # An empty list under a search says so: chats seemed lost behind a forgotten filter.
            search = search.strip()  # the search that made this list (the box may hold more by now)
            no_match = self.query_one("#no-match", Static)
            no_match.update(Text(f"No chat holds “{search}”. Clear the search to see every chat."))
            no_match.display = bool(search) and not conversations

    def clear_search(self) -> None:
        """Empty the search box (a chat this window starts is listed, whatever was searched); the
        caller lists the chats itself, so the box's change starts no search of its own."""
        self.app.workers.cancel_group(self.app, "search")  # one typed before: it would list by the old words
        with self.prevent(Input.Changed):
            self.query_one(Input).value = ""

    def search_text(self) -> str:
        return self.query_one(Input).value

    def focus_search(self) -> None:
        """Focus the search box now, not after the keys already on their way (``focus()`` waits
        for them, and a fast typist's first letters would land in the prompt box)."""
        self.screen.set_focus(self.query_one(Input))

    def titles(self) -> list[str]:
        return [item.conversation.title for item in self.query(ConversationItem)]

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.FilterChanged(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the search box opens the most recent matching chat. The app searches then and
        there: the list shown may still be an earlier search's (the search waits for typing to pause)."""
        event.stop()
        self.post_message(self.SearchSubmitted(event.value))

    def first_listed(self) -> Conversation | None:
        items = list(self.query(ConversationItem))
        return items[0].conversation if items else None

    def on_key(self, event: events.Key) -> None:
        """Down from the search box moves into the list, so a chat is picked without the mouse."""
        listing = self.query_one(ListView)
        if event.key == "down" and self.query_one(Input).has_focus and listing.children:
            event.stop()
            listing.focus()
            listing.index = 0

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, ConversationItem):
            self.post_message(self.Selected(event.item.conversation))
