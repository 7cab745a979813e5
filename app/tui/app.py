"""The duetto chat app: conversations on the left, the chat in the middle, stats at the bottom.

A thin front-end over the core (app/core): a chat turn is ``StoredChat.ask``, run in a thread
worker that posts what it reports back as messages, so a key press is handled at once even while
a reply is being written. The UI thread has its own database connection for what it shows;
documents are the DocumentDesk's (app/tui/document_desk.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import replace

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.highlight import highlight
from textual.worker import get_current_worker

from duetto.app.core.chat import CONVERSATION_TITLE_LENGTH, Listeners, StoredChat, runnable_settings
from duetto.app.core.models import Engine
from duetto.app.core.settings import ChatSettings, load_chat_settings, save_chat_settings
from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.config import ChatConfig
from duetto.app.tui.dialogs import ConfirmScreen, HelpScreen, RenameScreen
from duetto.app.tui.document_desk import PASTE_DOCUMENT_CHARACTERS, DocumentDesk
from duetto.app.tui.draft_sources import DraftLegend, Spans
from duetto.app.tui.fetch_screen import FetchScreen
from duetto.app.tui.messages import EngineFailed, EngineReady, ReplyDelta, ReplyFinished, ReplyProgress
from duetto.app.tui.profile_screen import ProfileScreen
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.settings_screen import SettingsScreen
from duetto.app.tui.sidebar import Sidebar
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import DecodeSettings
from duetto.engine.errors import EngineError
from duetto.engine.reply_stream import Written
from duetto.engine.stats import MODES, LiveRate
from duetto.store.conversations import (
    Conversation,
    create_conversation,
    delete_conversation,
    ensure_user,
    get_conversation,
    list_conversations,
    list_messages,
    list_users,
    rename_conversation,
)
from duetto.store.database import open_database
from duetto.store.errors import StoreError


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
        # priority: the prompt box (a TextArea) binds Ctrl+Y to redo, which hid this key while it had focus.
        Binding("ctrl+y", "copy_reply", "Copy reply", id="copy_reply", priority=True),
        Binding("ctrl+b", "toggle_sidebar", "Chats", id="toggle_sidebar"),
        Binding("ctrl+t", "cycle_mode", "Mode", id="cycle_mode"),
        Binding("f3", "settings", "Settings", id="settings"),
        Binding("f4", "switch_profile", "Profile", id="switch_profile"),
        Binding("f5", "toggle_draft_sources", "Draft colours", id="toggle_draft_sources"),
        # priority: the prompt box (a TextArea) binds F6 and F7 to select line / select all.
        Binding("f6", "documents", "Documents", id="documents", priority=True),
        Binding("f7", "sources", "Sources", id="sources", priority=True),
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
        "F3               settings: mode, temperature, drafter, …",
        "F4               switch profile (user), or add one",
        "F5               colour the draft's text (model, lookup)",
        "F6               documents: attach to this chat, read a file in",
        "F7               open a chunk the last document answer cited",
        "                 (a paste longer than 6,000 characters is offered to be kept as a document)",
        "Ctrl+P           command palette",
        "F1               this help",
        "Ctrl+Q           quit",
    ]

    def __init__(self, config: ChatConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = config.settings
        """What the next reply is decoded with: the config's defaults under the profile's saved settings."""
        self.chat_settings = ChatSettings()
        self.reply_spans: dict[int, Spans] = {}
        """Message id → its text by source, for replies written in this session (the draft-colour view)."""
        self.engine: Engine | None = None
        self.chats: dict[int, StoredChat] = {}
        """The open conversations on the current engine (their windows hold its KV cache's state)."""
        self.models_on_disk = not config.missing_models
        self.db = None
        self.user = None
        self.conversation: Conversation | None = None
        self.generating = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar()
            with Vertical(id="chat-column"):
                yield DraftLegend()
                yield ChatView()
                yield PromptInput(id="prompt")
        yield StatusBar()
        yield DocumentDesk()

    async def on_mount(self) -> None:
        try:
            self.db = open_database(self.config.database_path)
            await self.open_profile(self.config.user_name)
        except StoreError as error:
            self.notify(str(error), severity="error", timeout=30)
            return
        self.query_one(PromptInput).focus()
        self.warm_up_highlighting()
        if self.config.missing_models:
            self.push_screen(FetchScreen(list(self.config.missing_models)), self.on_models_fetched)
        else:
            self.load_engine(self.user.name)

    def on_models_fetched(self, fetched: bool | None) -> None:
        if fetched:
            self.models_on_disk = True
            self.load_engine(self.user.name)
        else:
            self.query_one(StatusBar).models = "models missing"
            self.notify("The models were not fetched; restart duetto to resume.", severity="warning", timeout=30)

    # --- the engine, in threads ----------------------------------------------------------

    @work(thread=True, group="warm-up")
    def warm_up_highlighting(self) -> None:
        """Load Pygments' lexers and plugins now, off the UI thread.

        The first code block of a reply otherwise loads them on the UI thread (guessing a language
        imports every lexer; an unknown one scans installed plugins, which may import IPython),
        freezing keys for 0.4 s on an idle machine and 2 s on a busy one (docs/experiments/NOTEBOOK.md).
        """
        highlight("x = 1\n")
        highlight("x = 1\n", language="no-such-language")

    @work(thread=True, exclusive=True, group="engine")
    def load_engine(self, user_name: str) -> None:
        try:
            engine = self.config.engine_factory(user_name)
        except (EngineError, StoreError) as error:  # a per-user engine may read the store
            self.post_message(EngineFailed(str(error)))
            return
        self.post_message(EngineReady(engine, user_name))

    def on_engine_ready(self, message: EngineReady) -> None:
        if self.config.engine_per_user and message.user_name != self.user.name:
            message.engine.close()  # built for a profile the user has since left
            return
        self.use_engine(message.engine)
        self.query_one(StatusBar).models = self.config.models_label

    def use_engine(self, engine: Engine | None) -> None:
        """Replies use ``engine`` from now on; the last one's chats go with it and its memory is freed."""
        old, self.engine = self.engine, engine
        self.chats.clear()
        if old is not None:
            old.close()

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.query_one(StatusBar).models = "no models"
        self.notify(message.error, title="Cannot load the models", severity="error", timeout=60)

    @work(thread=True, exclusive=True, group="generate")
    def generate_reply(self, conversation_id: int, text: str, settings: DecodeSettings) -> None:
        """One chat turn, in a thread: the core saves the question, writes the reply (from the
        attached documents when there are any) and saves it; this passes on what it reports."""
        worker = get_current_worker()
        engine = self.engine
        assert engine is not None
        rate = LiveRate()

        def written(step: Written) -> None:
            if step.text:
                spans = [(piece.source, piece.text) for piece in step.pieces]
                self.post_message(ReplyDelta(step.text, spans, rate.update(step.reply_tokens)))

        try:
            chat = self.chats.get(conversation_id)
            if chat is None:
                chat = StoredChat(
                    engine, conversation_id, database_path=self.config.database_path,
                    window_tokens=self.config.window_tokens,
                )  # fmt: skip
                self.chats[conversation_id] = chat
            listeners = Listeners(
                should_cancel=lambda: worker.is_cancelled,
                on_progress=lambda state: self.post_message(ReplyProgress(state)),
                on_written=written,
            )
            turn = chat.ask(text, settings, listeners)
        except (EngineError, StoreError) as error:
            self.post_message(ReplyFinished(conversation_id, None, str(error)))
            return
        self.post_message(ReplyFinished(conversation_id, turn))

    # --- sending and receiving -------------------------------------------------------------

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        if self.engine is None:
            self.notify("The models are still loading; your prompt is kept in the box.", severity="warning")
            self.query_one(PromptInput).text = message.text
            return
        if self.generating:
            self.notify("A reply is being written; Esc stops it.", severity="warning")
            self.query_one(PromptInput).text = message.text
            return
        if len(message.text) > PASTE_DOCUMENT_CHARACTERS and self.engine.can_read_documents:
            self.query_one(DocumentDesk).offer_paste_as_document(message.text, self.send_prompt)
            return
        await self.send_prompt(message.text)

    async def send_prompt(self, text: str) -> None:
        if self.conversation is None:
            title = " ".join(text.split())[:CONVERSATION_TITLE_LENGTH] or "New chat"
            self.conversation = create_conversation(self.db, self.user, title)
            await self.refresh_sidebar()
        chat = self.query_one(ChatView)
        await chat.add_message("user", text)
        await chat.begin_reply()
        self.generating = True
        status = self.query_one(StatusBar)
        status.state = "writing…"
        status.compression = ""
        settings, note = runnable_settings(self.settings, has_draft_model=self.engine.has_draft_model)
        if note:
            self.notify(note, severity="warning")
        self.generate_reply(self.conversation.id, text, settings)

    def on_reply_progress(self, message: ReplyProgress) -> None:
        if self.generating:
            self.query_one(StatusBar).state = message.state

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        self.query_one(StatusBar).state = "writing…"
        await self.query_one(ChatView).append_reply(message.text, message.spans)
        if message.tokens_per_second is not None:
            self.query_one(StatusBar).tokens_per_second = message.tokens_per_second

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        chat_view = self.query_one(ChatView)
        turn = message.turn
        if turn is not None and turn.citations:
            await chat_view.append_reply(sources_line([citation.label for citation in turn.citations]))
        _, spans = await chat_view.end_reply()
        self.generating = False
        status = self.query_one(StatusBar)
        if turn is None:
            status.state = "error"
            self.notify(message.error or "", title="The reply failed", severity="error", timeout=30)
            return
        stats = turn.stats
        if turn.message_id is not None:
            self.reply_spans[turn.message_id] = spans
        if turn.citations:
            self.query_one(DocumentDesk).show_sources([(cited.chunk_id, cited.label) for cited in turn.citations])
        if turn.stored_stats and "document_tokens" in turn.stored_stats:
            numbers = turn.stored_stats
            status.compression = f"doc {numbers['document_tokens']} → read {numbers['prompt_tokens']} tokens"
        status.tokens_per_second = stats.tokens_per_second if stats.tokens > 1 else None  # no rate from one token
        status.acceptance = stats.accepted / stats.drafted if stats.drafted else None
        status.state = "stopped" if stats.finish_reason == "cancelled" else ""
        note = cut_reply_note(stats.finish_reason, stats.tokens)
        if note:
            await chat_view.add_note(note)
        await self.refresh_sidebar()

    # --- conversations --------------------------------------------------------------------

    async def refresh_sidebar(self, title_filter: str = "") -> None:
        current = self.conversation.id if self.conversation else None
        await self.query_one(Sidebar).show(list_conversations(self.db, self.user, title_filter), current)

    async def open_conversation(self, conversation: Conversation) -> None:
        self.conversation = conversation
        messages = list_messages(self.db, conversation.id)
        shown = []
        sources: list[tuple[int, str]] = []
        for stored in messages:
            cited = [(cited["chunk_id"], cited["label"]) for cited in (stored.stats or {}).get("citations", [])]
            sources = cited or sources
            shown.append((stored.role, stored.content + sources_line([label for _, label in cited]),
                          self.reply_spans.get(stored.id)))  # fmt: skip
        await self.query_one(ChatView).show_messages(shown)
        self.query_one(DocumentDesk).show_sources(sources)  # F7 opens what this chat's last answer cited
        await self.refresh_sidebar()

    # --- profiles and settings ----------------------------------------------------------------

    async def open_profile(self, name: str) -> None:
        """Make ``name`` (created if new) the current user: their settings, their latest chat."""
        self.user = ensure_user(self.db, name)
        await self.apply_chat_settings(self.saved_chat_settings())
        self.query_one(StatusBar).profile = self.user.name
        conversations = list_conversations(self.db, self.user)
        if conversations:
            await self.open_conversation(conversations[0])
        else:
            self.conversation = None
            await self.query_one(ChatView).show_messages([])
            await self.refresh_sidebar()

    def saved_chat_settings(self) -> ChatSettings:
        """The profile's saved settings over the config's defaults; command-line choices win."""
        defaults = self.config.settings
        base = ChatSettings.of(defaults)
        try:
            saved = load_chat_settings(self.db, self.user, base)
        except StoreError as error:
            self.notify(f"{error}; using the defaults.", title="Settings", severity="warning", timeout=15)
            saved = base
        pinned = {name: getattr(defaults, name) for name in self.config.command_line_settings}
        return replace(saved, **pinned)

    async def apply_chat_settings(self, chat_settings: ChatSettings) -> None:
        """Use ``chat_settings`` from the next reply on (the one being written keeps its own)."""
        self.chat_settings = chat_settings
        self.settings = chat_settings.applied_to(self.config.settings)
        self.query_one(StatusBar).mode = self.settings.mode
        self.query_one(DraftLegend).display = chat_settings.show_draft_sources
        await self.query_one(ChatView).set_show_sources(chat_settings.show_draft_sources)

    async def save_and_apply(self, chat_settings: ChatSettings) -> None:
        """Apply ``chat_settings`` and save them for the profile (this session only without a database)."""
        try:
            if self.user is not None:
                save_chat_settings(self.db, self.user, chat_settings)
        except StoreError as error:
            self.notify(str(error), title="Settings not saved", severity="error", timeout=15)
        await self.apply_chat_settings(chat_settings)

    async def switch_profile(self, name: str) -> None:
        if self.generating:
            self.notify("Stop the reply (Esc) before switching profile.", severity="warning")
            return
        if name == self.user.name:
            return
        try:
            await self.open_profile(name)
        except StoreError as error:
            self.notify(str(error), title="Cannot switch profile", severity="error", timeout=15)
            return
        self.notify(f"Profile {name}: its chats and settings.")
        status = self.query_one(StatusBar)
        status.tokens_per_second, status.acceptance = None, None  # they were the last profile's
        if self.config.engine_per_user and self.models_on_disk:
            self.use_engine(None)  # free the last one's memory before the next one loads
            self.query_one(StatusBar).models = "loading models…"
            self.load_engine(name)
        self.query_one(PromptInput).focus()

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

    def action_settings(self) -> None:
        if self.user is None:
            return  # the database could not be opened; that was notified

        async def chosen(chat_settings: ChatSettings | None) -> None:
            if chat_settings is not None:
                await self.save_and_apply(chat_settings)
                self.notify("Settings saved; the next reply uses them.")

        self.push_screen(SettingsScreen(self.chat_settings, self.user.name), chosen)

    def action_switch_profile(self) -> None:
        if self.user is None:
            return

        async def chosen(name: str | None) -> None:
            if name:
                await self.switch_profile(name)

        names = [user.name for user in list_users(self.db)]
        self.push_screen(ProfileScreen(names, self.user.name), chosen)

    async def action_toggle_draft_sources(self) -> None:
        shown = not self.chat_settings.show_draft_sources
        await self.save_and_apply(replace(self.chat_settings, show_draft_sources=shown))
        if shown:
            self.notify("Replies written in this session show the draft's text in colour.")

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

    def action_documents(self) -> None:
        self.query_one(DocumentDesk).open_panel()

    def action_sources(self) -> None:
        self.query_one(DocumentDesk).open_sources()

    async def action_cycle_mode(self) -> None:
        modes = list(MODES)
        if self.engine is not None and not self.engine.has_draft_model:
            modes.remove("fast")
        next_mode = (
            modes[(modes.index(self.settings.mode) + 1) % len(modes)] if self.settings.mode in modes else "exact"
        )
        await self.save_and_apply(replace(self.chat_settings, mode=next_mode))


def sources_line(labels: list[str] | None) -> str:
    """What follows a document answer in the chat: the chunks it cited (none: nothing)."""
    return f"\n\n*Sources: {', '.join(labels)} (F7 opens them)*" if labels else ""


def cut_reply_note(finish_reason: str, tokens: int) -> str:
    """What to say under a reply that did not end by itself, with what to do about it."""
    if finish_reason == "length":
        return (
            f"(cut at the {tokens:,}-token limit: raise Max tokens in the settings, F3, "
            "or ask it to go on from where it stopped)"
        )
    if finish_reason == "context":
        return "(cut: the conversation filled the context window; start a new chat, Ctrl+N, or raise --context)"
    return ""
