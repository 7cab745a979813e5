"""The duetto chat app: conversations on the left, the chat in the middle, stats at the bottom.

State lives here and in SQLite: the database connection belongs to the UI thread;
generation runs in a thread worker that only reads the engine and posts messages
back, so a key press is handled at once even while a reply is being written.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.worker import get_current_worker

from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.dialogs import ConfirmScreen, HelpScreen, RenameScreen
from duetto.app.tui.fetch_screen import FetchScreen
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.sidebar import Sidebar
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.errors import EngineError
from duetto.engine.manifest import ModelSpec
from duetto.engine.prompting import fit_conversation
from duetto.engine.stats import ReplyStats
from duetto.store.conversations import (
    Conversation,
    add_message,
    create_conversation,
    delete_conversation,
    ensure_user,
    get_conversation,
    list_conversations,
    list_messages,
    rename_conversation,
)
from duetto.store.database import open_database
from duetto.store.errors import StoreError

SYSTEM_PROMPT = "You are duetto, a concise and helpful assistant running offline on the user's computer."
TITLE_LENGTH = 40


@dataclass(frozen=True)
class ChatConfig:
    """Everything the app needs from its caller; tests build one with tiny models."""

    engine_factory: Callable[[], Decoder]
    models_label: str
    settings: DecodeSettings = DecodeSettings()
    user_name: str = "default"
    database_path: Path | None = None
    missing_models: tuple[ModelSpec, ...] = ()
    """Manifest models to fetch (in a screen with progress bars) before the engine can load."""


class EngineReady(Message):
    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder


class EngineFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReplyDelta(Message):
    def __init__(self, text: str, tokens: int, seconds: float) -> None:
        super().__init__()
        self.text, self.tokens, self.seconds = text, tokens, seconds


class ReplyFinished(Message):
    def __init__(self, conversation_id: int, stats: ReplyStats | None, error: str | None = None) -> None:
        super().__init__()
        self.conversation_id, self.stats, self.error = conversation_id, stats, error


class DuettoApp(App[None]):
    TITLE = "duetto"
    CSS = """
    #main { height: 1fr; }
    #chat-column { width: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f1", "help", "Help", id="help"),
        Binding("escape", "cancel_reply", "Stop reply", id="cancel_reply"),
        Binding("ctrl+n", "new_chat", "New chat", id="new_chat"),
        Binding("f2", "rename_chat", "Rename chat", id="rename_chat"),
        Binding("f8", "delete_chat", "Delete chat", id="delete_chat"),
        Binding("ctrl+y", "copy_reply", "Copy reply", id="copy_reply"),
        Binding("ctrl+b", "toggle_sidebar", "Chats", id="toggle_sidebar"),
        Binding("ctrl+t", "cycle_mode", "Mode", id="cycle_mode"),
    ]
    KEY_HELP = [
        "Enter            send the prompt",
        "Ctrl+J           new line in the prompt (also Shift+Enter or Alt+Enter where the terminal sends them)",
        "Esc              stop the reply being written (the partial reply is kept)",
        "Ctrl+N           new chat",
        "F2               rename this chat",
        "F8               delete this chat",
        "Ctrl+Y           copy the last reply to the clipboard",
        "Ctrl+B           show or hide the chat list",
        "Ctrl+T           switch mode: exact → fast → target",
        "Ctrl+P           command palette",
        "F1               this help",
        "Ctrl+Q           quit",
    ]

    def __init__(self, config: ChatConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = config.settings
        self.decoder: Decoder | None = None
        self.db = None
        self.user = None
        self.conversation: Conversation | None = None
        self.generating = False
        self._reply_started = 0.0

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar()
            with Vertical(id="chat-column"):
                yield ChatView()
                yield PromptInput(id="prompt")
        yield StatusBar()

    async def on_mount(self) -> None:
        try:
            self.db = open_database(self.config.database_path)
            self.user = ensure_user(self.db, self.config.user_name)
        except StoreError as error:
            self.notify(str(error), severity="error", timeout=30)
            return
        status = self.query_one(StatusBar)
        status.mode = self.settings.mode
        conversations = list_conversations(self.db, self.user)
        if conversations:
            await self.open_conversation(conversations[0])
        else:
            await self.query_one(ChatView).show_messages([])
            await self.refresh_sidebar()
        self.query_one(PromptInput).focus()
        if self.config.missing_models:
            self.push_screen(FetchScreen(list(self.config.missing_models)), self.on_models_fetched)
        else:
            self.load_engine()

    def on_models_fetched(self, fetched: bool | None) -> None:
        if fetched:
            self.load_engine()
        else:
            self.query_one(StatusBar).models = "models missing"
            self.notify("The models were not fetched; restart duetto to resume.", severity="warning", timeout=30)

    # --- the engine, in threads ----------------------------------------------------------

    @work(thread=True, exclusive=True, group="engine")
    def load_engine(self) -> None:
        try:
            decoder = self.config.engine_factory()
        except EngineError as error:
            self.post_message(EngineFailed(str(error)))
            return
        self.post_message(EngineReady(decoder))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.decoder = message.decoder
        self.query_one(StatusBar).models = self.config.models_label

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.query_one(StatusBar).models = "no models"
        self.notify(message.error, title="Cannot load the models", severity="error", timeout=60)

    @work(thread=True, exclusive=True, group="generate")
    def generate_reply(self, conversation_id: int, messages: list[dict], settings: DecodeSettings) -> None:
        worker = get_current_worker()
        decoder = self.decoder
        assert decoder is not None
        started = time.perf_counter()
        try:
            reply_budget = min(settings.max_tokens, decoder.target.context_length // 4)
            prompt_tokens = fit_conversation(decoder.target, messages, reply_budget)
            for item in decoder.generate(prompt_tokens, settings, should_cancel=lambda: worker.is_cancelled):
                if isinstance(item, ReplyStats):
                    self.post_message(ReplyFinished(conversation_id, item))
                else:
                    tokens = len(decoder.last_generation.tokens)
                    self.post_message(ReplyDelta(item, tokens, time.perf_counter() - started))
        except EngineError as error:
            self.post_message(ReplyFinished(conversation_id, None, str(error)))

    # --- sending and receiving -------------------------------------------------------------

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        if self.decoder is None:
            self.notify("The models are still loading; your prompt is kept in the box.", severity="warning")
            self.query_one(PromptInput).text = message.text
            return
        if self.generating:
            self.notify("A reply is being written; Esc stops it.", severity="warning")
            self.query_one(PromptInput).text = message.text
            return
        if self.conversation is None:
            title = " ".join(message.text.split())[:TITLE_LENGTH] or "New chat"
            self.conversation = create_conversation(self.db, self.user, title)
            await self.refresh_sidebar()
        add_message(self.db, self.conversation.id, "user", message.text)
        chat = self.query_one(ChatView)
        await chat.add_message("user", message.text)
        await chat.begin_reply()
        history = [{"role": "system", "content": SYSTEM_PROMPT}] + [
            {"role": stored.role, "content": stored.content} for stored in list_messages(self.db, self.conversation.id)
        ]
        self.generating = True
        self.query_one(StatusBar).state = "writing…"
        self.generate_reply(self.conversation.id, history, self.settings)

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        await self.query_one(ChatView).append_reply(message.text)
        if message.tokens > 1 and message.seconds > 0:
            self.query_one(StatusBar).tokens_per_second = message.tokens / message.seconds

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        text = await self.query_one(ChatView).end_reply()
        self.generating = False
        status = self.query_one(StatusBar)
        if message.error:
            status.state = "error"
            self.notify(message.error, title="The reply failed", severity="error", timeout=30)
            return
        stats = message.stats
        if text or stats.finish_reason != "cancelled":
            add_message(self.db, message.conversation_id, "assistant", text, stats.as_dict())
        status.tokens_per_second = stats.tokens_per_second
        status.acceptance = stats.accepted / stats.drafted if stats.drafted else None
        status.state = "stopped" if stats.finish_reason == "cancelled" else ""
        await self.refresh_sidebar()

    # --- conversations --------------------------------------------------------------------

    async def refresh_sidebar(self, title_filter: str = "") -> None:
        current = self.conversation.id if self.conversation else None
        await self.query_one(Sidebar).show(list_conversations(self.db, self.user, title_filter), current)

    async def open_conversation(self, conversation: Conversation) -> None:
        self.conversation = conversation
        messages = list_messages(self.db, conversation.id)
        await self.query_one(ChatView).show_messages([(stored.role, stored.content) for stored in messages])
        await self.refresh_sidebar()

    async def on_sidebar_selected(self, message: Sidebar.Selected) -> None:
        if self.generating:
            self.notify("Stop the reply (Esc) before switching chats.", severity="warning")
            return
        await self.open_conversation(get_conversation(self.db, message.conversation.id))
        self.query_one(PromptInput).focus()

    async def on_sidebar_filter_changed(self, message: Sidebar.FilterChanged) -> None:
        await self.refresh_sidebar(message.text)

    # --- actions --------------------------------------------------------------------------

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        """Every action of the app in the command palette (Ctrl+P), beside Textual's own."""
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if binding.action in ("quit", "help"):
                continue  # Textual's palette already has these
            yield SystemCommand(binding.description, f"{binding.description} ({binding.key})",
                                functools.partial(self.run_action, binding.action))  # fmt: skip
        yield SystemCommand("Show keys", "Every key binding (F1)", self.action_help)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.KEY_HELP))

    def action_cancel_reply(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "generate")

    async def action_new_chat(self) -> None:
        if self.generating:
            self.notify("Stop the reply (Esc) before starting a new chat.", severity="warning")
            return
        self.conversation = None
        await self.query_one(ChatView).show_messages([])
        await self.refresh_sidebar()
        self.query_one(PromptInput).focus()

    def action_rename_chat(self) -> None:
        if self.conversation is None:
            self.notify("Nothing to rename yet: send a prompt first.")
            return

        async def rename(title: str | None) -> None:
            if title and self.conversation is not None:
                self.conversation = rename_conversation(self.db, self.conversation.id, title)
                await self.refresh_sidebar()

        self.push_screen(RenameScreen(self.conversation.title), rename)

    def action_delete_chat(self) -> None:
        if self.conversation is None or self.generating:
            return

        async def delete(confirmed: bool | None) -> None:
            if confirmed and self.conversation is not None:
                delete_conversation(self.db, self.conversation.id)
                await self.action_new_chat()

        self.push_screen(ConfirmScreen(f"Delete the chat {self.conversation.title!r}?"), delete)

    def action_copy_reply(self) -> None:
        text = self.query_one(ChatView).last_reply_text()
        if text:
            self.copy_to_clipboard(text)
            self.notify("Reply copied to the clipboard.")

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = not sidebar.display

    def action_cycle_mode(self) -> None:
        modes = ["exact", "fast", "target"]
        if self.decoder is not None and self.decoder.draft is None:
            modes.remove("fast")
        next_mode = (
            modes[(modes.index(self.settings.mode) + 1) % len(modes)] if self.settings.mode in modes else "exact"
        )
        self.settings = replace(self.settings, mode=next_mode)
        self.query_one(StatusBar).mode = next_mode
