"""The duetto chat app: conversations on the left, the chat in the middle, stats at the bottom.

A thin front-end over the core (app/core): a chat turn is ``StoredChat.ask`` (or ``regenerate``,
``edit``, ``continue_reply``), run in a thread worker that posts what it reports back as
messages, so a key press is handled at once even while a reply is being written. The UI thread
has its own database connection for what it shows; documents are the DocumentDesk's
(app/tui/document_desk.py); the keys, the help and the palette come from app/tui/keys.py.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.highlight import highlight
from textual.worker import get_current_worker

from duetto.app.core.chat import (
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_SETTING,
    Listeners,
    StoredChat,
    Turn,
    conversation_title,
    runnable_settings,
    system_prompt_for,
)
from duetto.app.core.chat_export import conversation_markdown, write_whole
from duetto.app.core.models import Engine, ModelPair
from duetto.app.core.plugins import forget_conversation_readings
from duetto.app.core.settings import ChatSettings, conversation_chat_settings, load_chat_settings, save_chat_settings
from duetto.app.core.wording import unfinished_reply
from duetto.app.tui.chat_view import ChatView, CopyRequested, EditRequested, UserMessage
from duetto.app.tui.clipboard import copy_with_program
from duetto.app.tui.config import ChatConfig
from duetto.app.tui.dialogs import ConfirmScreen, HelpScreen, RenameScreen
from duetto.app.tui.document_desk import PASTE_DOCUMENT_CHARACTERS, DocumentDesk
from duetto.app.tui.draft_sources import DraftLegend, Spans
from duetto.app.tui.fetch_screen import FetchScreen
from duetto.app.tui.keys import (
    APP_ACTIONS,
    APP_KEYS,
    PASTE_NOTE,
    KeysFileError,
    app_bindings,
    clashes,
    help_rows,
    key_label,
    keys_file,
    load_keymap,
)
from duetto.app.tui.messages import EngineFailed, EngineReady, ReplyDelta, ReplyFinished, ReplyProgress
from duetto.app.tui.pair_screen import PairScreen
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.settings_screen import SettingsScreen
from duetto.app.tui.sidebar import Sidebar
from duetto.app.tui.status_bar import WRITING, StatusBar
from duetto.app.tui.system_prompt_screen import SystemPromptChoice, SystemPromptScreen
from duetto.app.tui.user_screen import UserScreen
from duetto.engine.code_blocks import fenced_code
from duetto.engine.decoder import DecodeSettings
from duetto.engine.errors import EngineError
from duetto.engine.reply_stream import Written
from duetto.engine.stats import MODES, LiveRate
from duetto.store.conversation_memory import attached_documents
from duetto.store.conversations import (
    Conversation,
    create_conversation,
    delete_conversation,
    ensure_user,
    get_conversation,
    list_conversations,
    list_messages,
    list_users,
    matching_conversations,
    messages_written_by,
    rename_conversation,
    set_conversation_settings,
    set_system_prompt,
)
from duetto.store.database import open_database
from duetto.store.errors import StoreError
from duetto.store.personas import list_personas, save_persona
from duetto.store.settings import get_setting, set_setting

SEARCH_PAUSE_SECONDS = 0.15
"""The chat list follows the search box this long after the last key."""
PROMPT_HISTORY_LENGTH = 500
"""Earlier prompts Up can bring back."""
OTHERS_WRITES_SECONDS = 1.0
"""How often the app looks whether another duetto (`ask -c`, `docs add`, the server, a second
window) has written to the database: one ``PRAGMA data_version``, microseconds."""
TurnRun = Callable[[StoredChat, DecodeSettings, Listeners], Turn]
"""What a turn does with the stored chat: ask, regenerate, edit or continue."""


class DuettoApp(App[None]):
    TITLE = "duetto"
    CSS = """
    #main { height: 1fr; }
    #chat-column { width: 1fr; }
    """
    BINDINGS = app_bindings()

    def __init__(self, config: ChatConfig) -> None:
        super().__init__()
        self.config = config
        self.settings = config.settings
        """What the next reply is decoded with: the config's defaults under the user's saved settings."""
        self.chat_settings = ChatSettings()
        self.reply_spans: dict[int, Spans] = {}
        """Message id → its text by source, for replies written in this session (the draft-colour view)."""
        self.engine: Engine | None = None
        self.chats: dict[int, StoredChat] = {}
        """The open conversations on the current engine (their windows hold its KV cache's state)."""
        self.models_on_disk = not config.missing_models
        self.db = None
        self.data_version: int | None = None
        """The database's data_version when the app last showed it; another connection's commit changes it."""
        self.user = None
        self.conversation: Conversation | None = None
        self.generating = False
        self.keymap: dict[str, str] = {}
        """The user's keys.yaml, over the defaults (app/tui/keys.py)."""
        self.editing: UserMessage | None = None
        """The user's message being edited in the prompt box: Enter resends it, later turns go."""
        self.next_system_prompt: str | None = None
        """A system prompt chosen before the chat's first message: the new conversation gets it."""
        self.wanted_pair: ModelPair | None = config.pair
        """The pair replies should come from (the open conversation's); its engine may still be loading."""
        self.engine_pair: ModelPair | None = None
        """The pair of the engine in use."""

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
        self.apply_keys_file()
        try:
            self.db = open_database(self.config.database_path)
            await self.open_user(self.config.user_name)
        except StoreError as error:
            self.notify(str(error), severity="error", timeout=30)
            return
        self.data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        # Through the app's own queue, not in the timer's task: there the look ran between the
        # awaits of whatever handler was under way (a prompt being sent, a chat being opened) and
        # rebuilt the chat view in the middle of it, listing messages twice.
        self.set_interval(OTHERS_WRITES_SECONDS, lambda: self.call_later(self.show_others_writes))
        self.query_one(PromptInput).focus()
        self.warm_up_highlighting()
        if self.config.missing_models:
            self.push_screen(FetchScreen(list(self.config.missing_models)), self.on_models_fetched)
        else:
            self.load_engine(self.user.name)

    def apply_keys_file(self) -> None:
        """The user's key bindings from keys.yaml (a bad file: the defaults, and a notice naming it)."""
        try:
            self.keymap = load_keymap()
        except KeysFileError as error:
            self.notify(str(error), title="Keys", severity="error", timeout=30)
            return
        for clash in clashes(self.keymap):
            self.notify(clash, title="Keys", severity="warning", timeout=30)
        self.set_keymap(self.keymap)

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
        pair = self.wanted_pair
        try:
            if pair is None or pair == self.config.pair or self.config.pair_engine_factory is None:
                engine = self.config.engine_factory(user_name)
            else:
                engine = self.config.pair_engine_factory(user_name, pair)
        except (EngineError, StoreError) as error:  # a per-user engine may read the store
            self.post_message(EngineFailed(str(error)))
            return
        self.post_message(EngineReady(engine, user_name, pair))

    def on_engine_ready(self, message: EngineReady) -> None:
        if self.config.engine_per_user and message.user_name != self.user.name:
            self.close_engine(message.engine)  # built for a user the app has since left
            return
        if self.engine is not None and message.pair == self.engine_pair:
            self.close_engine(message.engine)  # a second load of the pair in use (switched away and back)
            return
        if message.pair != self.wanted_pair:  # the chat opened meanwhile is answered by another pair
            self.close_engine(message.engine)
            self.load_engine(self.user.name)
            return
        self.use_engine(message.engine)
        self.engine_pair = message.pair
        label = message.pair.label if message.pair else self.config.models_label
        status = self.query_one(StatusBar)
        status.models = f"{label} (target on {message.engine.where})" if message.engine.is_remote else label
        status.decoded_by_server = message.engine.is_remote
        for note in message.engine.notes:
            self.notify(note, severity="warning", timeout=15)

    def use_pair(self, pair: ModelPair | None) -> None:
        """Answer with ``pair`` from the next reply on: its engine is loaded unless it is the one in use."""
        pair = pair or self.config.pair
        if pair == self.wanted_pair or self.config.pair_engine_factory is None:
            return
        busy = self.engine_busy()
        if busy:
            self.notify(f"The models stay {self.wanted_pair.label} while {busy}.", severity="warning", timeout=10)
            return
        available = [choice for _, choice in self.pair_choices()]
        if pair != self.config.pair and pair not in available:
            self.notify(f"This chat was answered by {pair.label}, which is not on this machine; "
                        f"it goes on with {self.wanted_pair.label}.", severity="warning", timeout=15)  # fmt: skip
            return
        self.wanted_pair = pair
        if not self.models_on_disk or self.user is None or (self.engine is None and self.engine_pair is None):
            return  # no engine yet: the first one, loading or about to, is checked against the wanted pair
        self.use_engine(None)  # free the last pair's memory before the next one loads
        self.query_one(StatusBar).models = f"loading {pair.label}…"
        self.load_engine(self.user.name)

    def pair_choices(self) -> list[tuple[str, ModelPair]]:
        """The pairs on this machine, the session's own first."""
        choices = self.config.pair_choices() if self.config.pair_choices else []
        if self.config.pair is not None and self.config.pair not in [pair for _, pair in choices]:
            choices.insert(0, ("this session's", self.config.pair))
        return choices

    def use_engine(self, engine: Engine | None) -> None:
        """Replies use ``engine`` from now on; the last one's chats go with it and its memory is
        freed (in a thread: closing waits for a document reader that may be loading)."""
        old, self.engine = self.engine, engine
        self.chats.clear()
        if old is not None:
            self.close_engine(old)

    @work(thread=True, group="close-engine")
    def close_engine(self, engine: Engine) -> None:
        engine.close()

    def engine_busy(self) -> str:
        """What is using the engine now (a reply, a document being read), or "" when nothing is:
        an engine in use must not be closed under it."""
        if self.generating:
            return "a reply is being written (Esc stops it)"
        if any(worker.group == "ingest" and not worker.is_finished for worker in self.workers):
            return "a document is being read"
        return ""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a dialog is open, the app's keys are the dialog's (Ctrl+S saves there, Ctrl+R
        does not write a reply behind it); quitting always works."""
        return not (self.screen.is_modal and action in APP_ACTIONS and action != "quit")

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.query_one(StatusBar).models = "no models"
        self.notify(message.error, title="Cannot load the models", severity="error", timeout=60)

    @work(thread=True, exclusive=True, group="generate")
    def generate_reply(self, conversation_id: int, run: TurnRun, settings: DecodeSettings) -> None:
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
            if changed := engine.refresh_plugin():  # `plugin train` in another terminal meanwhile
                self.call_from_thread(self.notify, f"{self.user.name}: {changed}", timeout=10)
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
            turn = run(chat, settings, listeners)
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
        if self.editing is not None:
            await self.resend_edited(message.text)
            return
        if len(message.text) > PASTE_DOCUMENT_CHARACTERS and self.engine.can_read_documents:
            self.query_one(DocumentDesk).offer_paste_as_document(message.text, self.send_prompt)
            return
        await self.send_prompt(message.text)

    async def send_prompt(self, text: str) -> None:
        if self.conversation is None:
            self.conversation = create_conversation(self.db, self.user, conversation_title(text))
            self.remember_chat_settings()
            if self.next_system_prompt is not None:
                self.conversation = set_system_prompt(self.db, self.conversation.id, self.next_system_prompt)
                self.next_system_prompt = None
            await self.list_new_chat()
        chat = self.query_one(ChatView)
        await chat.add_message("user", text)
        await chat.begin_reply()
        self.start_turn(lambda stored, settings, listeners: stored.ask(text, settings, listeners))

    def start_turn(self, run: TurnRun) -> None:
        """Run a turn in the reply worker; the chat view is ready for its reply."""
        assert self.conversation is not None and self.engine is not None
        self.generating = True
        status = self.query_one(StatusBar)
        status.state = WRITING
        status.compression = ""
        settings, note = runnable_settings(self.settings, has_draft_model=self.engine.has_draft_model)
        if note and not self.engine.is_remote:  # a server decodes as it is set up to: no mode of ours applies
            self.notify(note, severity="warning")
        self.generate_reply(self.conversation.id, run, settings)

    def can_continue(self) -> bool:
        """Whether Ctrl+G can go on with the open chat's last reply: not a document answer."""
        return self.conversation is not None and not attached_documents(self.db, self.conversation.id)

    def can_start_turn(self, what: str) -> bool:
        """Whether a turn can start now; if not, says why."""
        if self.engine is None:
            self.notify(f"The models are still loading; {what} when they are.", severity="warning")
            return False
        if self.generating:
            self.notify("A reply is being written; Esc stops it.", severity="warning")
            return False
        if self.conversation is None:
            self.notify(f"Nothing to {what} yet: send a prompt first.")
            return False
        return True

    async def resend_edited(self, text: str) -> None:
        """The edited message replaces the old one; every later message goes, here and stored."""
        edited, self.editing = self.editing, None
        self.query_one(StatusBar).state = ""
        assert edited is not None
        chat = self.query_one(ChatView)
        message_id = edited.message_id
        if message_id is None or edited not in chat.messages() or self.conversation is None:
            self.notify("That message is no longer in this chat; your text is sent as a new one.")
            await self.send_prompt(text)
            return
        await chat.remove_from(edited)
        await chat.add_message("user", text)
        await chat.begin_reply()
        self.start_turn(lambda stored, settings, listeners: stored.edit(message_id, text, settings, listeners))

    def on_reply_progress(self, message: ReplyProgress) -> None:
        if self.generating:
            self.query_one(StatusBar).state = message.state

    async def on_reply_delta(self, message: ReplyDelta) -> None:
        self.query_one(StatusBar).state = WRITING
        await self.query_one(ChatView).append_reply(message.text, message.spans)
        if message.tokens_per_second is not None:
            self.query_one(StatusBar).tokens_per_second = message.tokens_per_second

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        """The turn's end shown: its message ids, note, error and stats, the chat list. The turn
        counts as under way (``generating``) until all of that is done, so that whatever waits
        for its end never reads a view half rebuilt or an error not yet said."""
        try:
            await self.show_finished_reply(message)
        except NoMatches:
            return  # the app is closing and its widgets go one by one: nothing to show it on
        finally:
            self.generating = False

    async def show_finished_reply(self, message: ReplyFinished) -> None:
        chat_view = self.query_one(ChatView)
        turn = message.turn
        if turn is not None and turn.citations:
            await chat_view.append_reply(sources_line([citation.label for citation in turn.citations]))
        _, spans = await chat_view.end_reply()
        if turn is not None and turn.message_id is not None:
            self.reply_spans[turn.message_id] = spans  # before a rebuild below shows the reply again
        if self.conversation is not None and self.conversation.id == message.conversation_id:
            stored = list_messages(self.db, message.conversation_id)
            if not chat_view.set_message_ids([(kept.role, kept.id) for kept in stored]):
                await self.show_conversation()  # a reply that was not kept (failed, stopped before a word)
        status = self.query_one(StatusBar)
        if turn is None:
            status.state = "error"
            self.notify(message.error or "", title="The reply failed", severity="error", timeout=30)
            return
        stats = turn.stats
        if turn.citations:  # the desk goes first as the app closes: on_reply_finished's NoMatches
            self.query_one(DocumentDesk).show_sources([(cited.chunk_id, cited.label) for cited in turn.citations])
        if turn.stored_stats and "document_tokens" in turn.stored_stats:
            numbers = turn.stored_stats
            status.compression = f"doc {numbers['document_tokens']} → read {numbers['prompt_tokens']} tokens"
        status.tokens_per_second = stats.tokens_per_second if stats.tokens > 1 else None  # no rate from one token
        status.acceptance = stats.accepted / stats.drafted if stats.drafted else None
        status.state = "stopped" if stats.finish_reason == "cancelled" else ""
        if turn.message_id is not None or stats.error:  # a reply was kept (Esc before a word keeps none)
            note = reply_note(stats.as_dict(), can_continue=self.can_continue())
            if note:
                await chat_view.add_note(note)
        await self.refresh_sidebar()

    # --- conversations --------------------------------------------------------------------

    async def refresh_sidebar(self, search: str | None = None, every_chat: list[Conversation] | None = None) -> None:
        """The chat list: every chat (``every_chat`` when the caller has just listed them), or those
        whose title or messages hold the search's words."""
        try:
            sidebar = self.query_one(Sidebar)
            search = sidebar.search_text() if search is None else search
            current = self.conversation.id if self.conversation else None
            if search.strip():
                shown = matching_conversations(self.db, self.user, search)
            else:
                shown = every_chat if every_chat is not None else list_conversations(self.db, self.user)
            await sidebar.show(shown, current, search)
        except NoMatches:
            return  # the app is closing and its widgets go one by one (a reply ending as it quit, in CI)

    async def list_new_chat(self) -> None:
        """The chat list once this window has started a chat: with the search cleared, so that the
        new chat is listed whatever was searched."""
        self.query_one(Sidebar).clear_search()
        await self.refresh_sidebar(search="")

    async def show_others_writes(self) -> None:
        """Show what another duetto process wrote since the last look: the chat list (a chat `ask
        -c` started, one the server or another window renamed or removed) and the open chat's new
        messages, unless a turn of this window's own is under way."""
        try:
            version = self.db.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return  # a busy or failing disk: the next look tries again
        if version == self.data_version:
            return
        self.data_version = version
        conversations = list_conversations(self.db, self.user)
        if self.conversation is not None and self.conversation.id not in {chat.id for chat in conversations}:
            if self.generating or self.editing is not None:
                return  # this window's turn ends with its own error; the chat is gone
            await self.open_user(self.user.name)
            return
        try:
            await self.refresh_sidebar(every_chat=conversations)
            if self.conversation is None or self.generating or self.editing is not None:
                return
            shown = [message.message_id for message in self.query_one(ChatView).messages()]
        except NoMatches:
            return  # a tick while the app closes: its widgets are gone (seen in CI)
        if shown != [message.id for message in list_messages(self.db, self.conversation.id)]:
            await self.show_conversation(unless_shown=True)

    async def open_conversation(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.stop_editing()
        await self.apply_conversation_settings(conversation)
        await self.show_conversation()
        await self.refresh_sidebar()

    async def show_conversation(self, unless_shown: bool = False) -> None:
        """The open conversation's messages as stored (after a turn that kept nothing, too); with
        ``unless_shown``, left as they are if the view already lists them (ChatView.show_messages)."""
        assert self.conversation is not None
        messages = list_messages(self.db, self.conversation.id)
        shown = []
        notes: dict[int, str] = {}
        sources: list[tuple[int, str]] = []
        for stored in messages:
            cited = cited_sources(stored.stats)
            sources = cited or sources
            shown.append((stored.role, stored.content + sources_line([label for _, label in cited]),
                          self.reply_spans.get(stored.id), stored.id))  # fmt: skip
            if stored.role == "assistant":  # a reply stopped or cut says so when the chat is opened again too
                last = stored is messages[-1]
                note = reply_note(stored.stats, can_continue=last and self.can_continue())
                if note:
                    notes[stored.id] = note
        await self.query_one(ChatView).show_messages(shown, notes, unless_shown)
        # F7 opens what this chat's last answer cited. The desk, composed last, goes first when the
        # app closes, and the poll for other processes' writes can land in between (seen in CI).
        for desk in self.query(DocumentDesk):
            desk.show_sources(sources)

    # --- users and settings -------------------------------------------------------------------

    async def open_user(self, name: str) -> None:
        """Make ``name`` (created if new) the current user: their settings, their latest chat."""
        self.user = ensure_user(self.db, name)
        self.query_one(PromptInput).set_history(messages_written_by(self.db, self.user)[-PROMPT_HISTORY_LENGTH:])
        self.next_system_prompt = None
        await self.apply_chat_settings(self.saved_chat_settings())
        self.query_one(StatusBar).user_name = self.user.name
        conversations = list_conversations(self.db, self.user)
        if conversations:
            await self.open_conversation(conversations[0])
        else:
            self.conversation = None
            await self.query_one(ChatView).show_messages([])
            await self.refresh_sidebar()

    async def apply_conversation_settings(self, conversation: Conversation) -> None:
        """Answer the conversation as it was answered: its own settings and pair, when it kept them."""
        try:
            kept = conversation_chat_settings(conversation.settings, self.saved_chat_settings())
        except StoreError as error:
            self.notify(f"{error}; using the user's.", title="Chat settings", severity="warning", timeout=15)
            kept = None
        if kept is not None:
            pinned = {name: getattr(self.config.settings, name) for name in self.config.command_line_settings}
            await self.apply_chat_settings(replace(kept, **pinned))
        pair = ModelPair.from_dict((conversation.settings or {}).get("pair"))
        if pair is not None:
            self.use_pair(pair)

    def saved_chat_settings(self) -> ChatSettings:
        """The user's saved settings over the config's defaults; command-line choices win."""
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
        """Apply ``chat_settings`` and save them for the user and the open chat (this session
        only without a database)."""
        try:
            if self.user is not None:
                save_chat_settings(self.db, self.user, chat_settings)
        except StoreError as error:
            self.notify(str(error), title="Settings not saved", severity="error", timeout=15)
        await self.apply_chat_settings(chat_settings)
        self.remember_chat_settings()

    def remember_chat_settings(self) -> None:
        """The open conversation keeps its pair and settings, to be answered the same way when reopened."""
        if self.conversation is None or self.db is None:
            return
        pair = self.wanted_pair
        kept = {"chat": asdict(self.chat_settings), **({"pair": pair.as_dict()} if pair else {})}
        try:
            self.conversation = set_conversation_settings(self.db, self.conversation.id, kept)
        except StoreError as error:
            self.notify(str(error), title="Chat settings not kept", severity="error", timeout=15)

    async def switch_user(self, name: str) -> None:
        if self.generating:
            self.notify("Stop the reply (Esc) before switching user.", severity="warning")
            return
        if name == self.user.name:
            return
        try:
            await self.open_user(name)
        except StoreError as error:
            self.notify(str(error), title="Cannot switch user", severity="error", timeout=15)
            return
        self.notify(f"User {name}: their chats, settings and plugin.")
        status = self.query_one(StatusBar)
        status.tokens_per_second, status.acceptance = None, None  # they were the last user's
        if self.config.engine_per_user and self.models_on_disk:
            self.use_engine(None)  # free the last one's memory before the next one loads
            self.query_one(StatusBar).models = "loading models…"
            self.load_engine(name)
        self.query_one(PromptInput).focus()

    async def on_sidebar_selected(self, message: Sidebar.Selected) -> None:
        await self.open_chosen_chat(message.conversation)

    async def open_chosen_chat(self, conversation: Conversation) -> None:
        """Open the chat the user picked in the list (or found with Enter), the prompt box focused."""
        if self.generating:
            self.notify("Stop the reply (Esc) before switching chats.", severity="warning")
            return
        try:
            chosen = get_conversation(self.db, conversation.id)
        except StoreError:  # listed before another duetto removed it
            self.notify(f"The chat {conversation.title!r} is no longer there.", severity="warning")
            await self.refresh_sidebar()
            return
        await self.open_conversation(chosen)
        self.query_one(PromptInput).focus()

    def on_sidebar_filter_changed(self, message: Sidebar.FilterChanged) -> None:
        self.search_chats(message.text)

    async def on_sidebar_search_submitted(self, message: Sidebar.SearchSubmitted) -> None:
        if not message.text.strip():  # nothing searched: back to the prompt, in the chat that is open
            self.query_one(PromptInput).focus()
            return
        self.workers.cancel_group(self, "search")
        await self.refresh_sidebar(message.text)
        best = self.query_one(Sidebar).first_listed()
        if best is not None:
            await self.open_chosen_chat(best)

    @work(exclusive=True, group="search")
    async def search_chats(self, text: str) -> None:
        """The chat list for what the search box holds, once typing pauses: rebuilt on every key,
        it held the app's queue while a fast typist's (or a paste's) next keys came in."""
        await asyncio.sleep(SEARCH_PAUSE_SECONDS)
        # Shielded: a newer search, Enter or a new chat cancels this worker, and a cancel landing
        # in the list's clear or extend would leave it half made; cancelled, the pause ends.
        await asyncio.shield(self.refresh_sidebar(text))

    # --- actions --------------------------------------------------------------------------

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        """Every action of the app in the command palette (Ctrl+P), beside Textual's own."""
        yield from super().get_system_commands(screen)
        for action in APP_KEYS:
            if action.id == "quit":
                continue  # Textual's palette already has it
            keys = key_label(self.keymap.get(action.id, action.keys))
            yield SystemCommand(action.title, f"{keys}: {action.help}", functools.partial(self.run_action, action.id))

    def action_help(self) -> None:
        notes = [PASTE_NOTE, f"Keys can be changed in {keys_file()}, e.g. 'regenerate: ctrl+r'."]
        self.push_screen(HelpScreen(help_rows(self.keymap), notes))

    def action_settings(self) -> None:
        if self.user is None:
            return  # the database could not be opened; that was notified

        async def chosen(chat_settings: ChatSettings | None) -> None:
            if chat_settings is not None:
                await self.save_and_apply(chat_settings)
                self.notify("Settings saved; the next reply uses them.")

        remote = self.engine.where if self.engine is not None and self.engine.is_remote else None
        self.push_screen(SettingsScreen(self.chat_settings, self.user.name, remote_target=remote), chosen)

    def action_switch_user(self) -> None:
        if self.user is None:
            return

        async def chosen(name: str | None) -> None:
            if name:
                await self.switch_user(name)

        names = [user.name for user in list_users(self.db)]
        self.push_screen(UserScreen(names, self.user.name), chosen)

    async def action_toggle_draft_sources(self) -> None:
        shown = not self.chat_settings.show_draft_sources
        await self.save_and_apply(replace(self.chat_settings, show_draft_sources=shown))
        if shown:
            self.notify("Replies written in this session show the draft's text in colour.")

    def action_cancel_reply(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "generate")
        elif self.editing is not None:
            self.stop_editing()
            self.query_one(PromptInput).clear()
            self.notify("Edit cancelled; the chat is as it was.")

    def stop_editing(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.query_one(StatusBar).state = ""

    # --- turns: again, edited, continued ----------------------------------------------------

    async def action_regenerate(self) -> None:
        if not self.can_start_turn("write again"):
            return
        chat = self.query_one(ChatView)
        question = chat.last_user_message()
        if question is None:
            self.notify("Nothing to write again yet: send a prompt first.")
            return
        await chat.remove_after(question)
        await chat.begin_reply()
        self.start_turn(lambda stored, settings, listeners: stored.regenerate(settings, listeners))

    async def action_continue_reply(self) -> None:
        if not self.can_start_turn("continue"):
            return
        if not await self.query_one(ChatView).resume_reply():
            self.notify("There is no reply to continue: the last message is yours (Ctrl+R writes its reply).")
            return
        self.start_turn(lambda stored, settings, listeners: stored.continue_reply(settings, listeners))

    def action_edit_last(self) -> None:
        message = self.query_one(ChatView).last_user_message()
        if message is None:
            self.notify("No message of yours to edit in this chat yet.")
            return
        self.post_message(EditRequested(message.message_id, message.text))

    def on_edit_requested(self, message: EditRequested) -> None:
        if self.generating:
            self.notify("Stop the reply (Esc) before editing.", severity="warning")
            return
        chat = self.query_one(ChatView)
        widgets = [shown for shown in chat.messages() if isinstance(shown, UserMessage)]
        target = next((shown for shown in widgets if shown.message_id == message.message_id), None)
        if target is None or message.message_id is None:
            self.notify("That message is not saved yet; wait for its reply.")
            return
        self.editing = target
        prompt = self.query_one(PromptInput)
        prompt.text = message.text
        prompt.move_cursor(prompt.document.end)
        prompt.focus()
        self.query_one(StatusBar).state = "editing: Enter resends (later turns are replaced), Esc cancels"

    # --- copying ---------------------------------------------------------------------------

    def on_copy_requested(self, message: CopyRequested) -> None:
        self.copy_text(message.text, message.what)

    def copy_text(self, text: str, what: str) -> None:
        """Copy through the terminal (OSC 52: works over SSH and in tmux) and, where there is one,
        the local clipboard program too (some terminals ignore OSC 52)."""
        self.copy_to_clipboard(text)
        self.copy_with_program(text)
        lines = text.count("\n") + 1
        self.notify(f"Copied {what} ({lines} line{'' if lines == 1 else 's'}).")

    @work(thread=True, group="clipboard")
    def copy_with_program(self, text: str) -> None:
        copy_with_program(text)

    def action_copy_code(self) -> None:
        text = self.query_one(ChatView).last_reply_text()
        blocks = fenced_code(text or "")
        if not blocks:
            self.notify("The last reply has no code block; Ctrl+Y copies the whole reply.")
            return
        what = (
            "the code block"
            if len(blocks) == 1
            else f"code block {len(blocks)} of {len(blocks)} (Shift+Tab selects it; 1–{len(blocks)} copy the others)"
        )
        self.copy_text(blocks[-1], what)

    # --- models, search, export, system prompt ---------------------------------------------

    def action_switch_pair(self) -> None:
        choices = self.pair_choices()
        if self.config.pair_engine_factory is None or not choices:
            self.notify("Only this session's models are available.")
            return
        if self.generating:
            self.notify("Stop the reply (Esc) before switching models.", severity="warning")
            return

        def chosen(pair: ModelPair | None) -> None:
            if pair is None or pair == self.wanted_pair or self.engine_busy():
                return
            self.use_pair(pair)
            self.remember_chat_settings()
            self.notify(f"{pair.label} answers from the next reply on; it rereads this chat first.")

        self.push_screen(PairScreen(choices, self.wanted_pair), chosen)

    # --- search, export, system prompt ------------------------------------------------------

    def action_search(self) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = True
        sidebar.focus_search()

    def action_export_chat(self) -> None:
        if self.conversation is None:
            self.notify("Nothing to export yet: send a prompt first.")
            return
        path = Path.cwd() / f"duetto-chat-{self.conversation.id}.md"
        try:
            write_whole(path, conversation_markdown(self.db, self.conversation))
        except StoreError as error:
            self.notify(str(error), title="Not exported", severity="error", timeout=15)
            return
        self.notify(f"Saved to {path}", title="Chat exported")

    def action_system_prompt(self) -> None:
        if self.user is None:
            return
        default = get_setting(self.db, self.user, SYSTEM_PROMPT_SETTING) or SYSTEM_PROMPT
        chat_id = self.conversation.id if self.conversation is not None else None  # the chat it is for
        if chat_id is not None:
            try:
                current = system_prompt_for(self.db, get_conversation(self.db, chat_id))
            except StoreError as error:  # removed by another duetto a moment ago
                self.notify(str(error), severity="error")
                return
        else:
            current = self.next_system_prompt or default

        def chosen(choice: SystemPromptChoice | None) -> None:
            if choice is not None:
                self.use_system_prompt(choice, default, chat_id)

        self.push_screen(SystemPromptScreen(current, SYSTEM_PROMPT, list_personas(self.db, self.user)), chosen)

    def use_system_prompt(self, choice: SystemPromptChoice, default: str, chat_id: int | None) -> None:
        """Apply the dialog's choice to the chat it was opened for (``chat_id``; None: the next new
        chat), whichever chat is open when it closes."""
        try:
            if choice.persona_name:
                save_persona(self.db, self.user, choice.persona_name, choice.prompt)
            if choice.as_default:
                set_setting(self.db, self.user, SYSTEM_PROMPT_SETTING, choice.prompt)
                default = choice.prompt
                self.chats.clear()  # every chat without a prompt of its own now uses this one
            own = None if choice.prompt == default else choice.prompt
            if chat_id is None:
                self.next_system_prompt = own
            else:
                changed = set_system_prompt(self.db, chat_id, own)
                self.chats.pop(chat_id, None)  # its window was built on the old prompt
                if self.conversation is not None and self.conversation.id == chat_id:
                    self.conversation = changed
        except StoreError as error:
            self.notify(str(error), title="System prompt not saved", severity="error", timeout=15)
            return
        saved = f"; kept as persona {choice.persona_name!r}" if choice.persona_name else ""
        self.notify(f"System prompt set: the next reply uses it{saved}.")

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

        chat = self.conversation  # the chat the dialog names, whatever is open when it closes

        async def rename(title: str | None) -> None:
            if not title:
                return
            try:
                renamed = rename_conversation(self.db, chat.id, title)
            except StoreError as error:  # removed meanwhile (by another duetto, say)
                self.notify(str(error), severity="error")
                return
            if self.conversation is not None and self.conversation.id == chat.id:
                self.conversation = renamed
            await self.refresh_sidebar()

        self.push_screen(RenameScreen(chat.title), rename)

    def action_delete_chat(self) -> None:
        if self.conversation is None or self.generating:
            return

        chat = self.conversation  # the chat the dialog names: another may be open when it closes

        async def delete(confirmed: bool | None) -> None:
            if not confirmed:
                return
            try:
                forget_conversation_readings(self.db, chat.id)  # they hold its messages
                delete_conversation(self.db, chat.id)
            except StoreError as error:  # removed meanwhile (by another duetto, say)
                self.notify(str(error), severity="error")
                return
            if self.conversation is not None and self.conversation.id == chat.id:
                await self.action_new_chat()
            else:
                await self.refresh_sidebar()

        self.push_screen(ConfirmScreen(f"Delete the chat {chat.title!r}?"), delete)

    def action_copy_reply(self) -> None:
        text = self.query_one(ChatView).last_reply_text()
        if text:
            self.copy_text(text, "the last reply")

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one(Sidebar)
        sidebar.display = not sidebar.display

    def action_documents(self) -> None:
        self.query_one(DocumentDesk).open_panel()

    def action_sources(self) -> None:
        self.query_one(DocumentDesk).open_sources()

    async def action_cycle_mode(self) -> None:
        if self.engine is not None and self.engine.is_remote:
            self.notify(f"the target on {self.engine.where} drafts for itself: duetto's modes do not apply to it")
            return
        modes = list(MODES)
        if self.engine is not None and not self.engine.has_draft_model:
            modes.remove("fast")
        next_mode = (
            modes[(modes.index(self.settings.mode) + 1) % len(modes)] if self.settings.mode in modes else "exact"
        )
        await self.save_and_apply(replace(self.chat_settings, mode=next_mode))


def cited_sources(stats: dict | None) -> list[tuple[int, str]]:
    """(chunk id, label) of what a stored document answer cited; nothing for anything else (an
    imported conversation's stats are whatever its file held)."""
    citations = (stats or {}).get("citations") if isinstance(stats, dict) else None
    if not isinstance(citations, list):
        return []
    return [
        (cited["chunk_id"], cited["label"])
        for cited in citations
        if isinstance(cited, dict) and isinstance(cited.get("chunk_id"), int) and isinstance(cited.get("label"), str)
    ]


def sources_line(labels: list[str] | None) -> str:
    """What follows a document answer in the chat: the chunks it cited (none: nothing)."""
    return f"\n\n*Sources: {', '.join(labels)} (F7 opens them)*" if labels else ""


def reply_note(stats: Mapping[str, Any] | None, can_continue: bool) -> str:
    """What to say under a reply that did not end by itself, with what to do about it;
    ``can_continue``: Ctrl+G can go on with it (the chat's last reply, no documents attached)."""
    words = unfinished_reply(stats)
    if not words:  # also when ``stats`` is not a mapping
        return ""
    assert isinstance(stats, Mapping)
    go_on = "Ctrl+G goes on from where it stopped" if can_continue else ""
    finish = "" if stats.get("error") else stats.get("finish_reason")
    if finish == "length":
        hint = "raise Max tokens in the settings, F3" + (f", or {go_on}" if go_on else "")
    elif finish == "context":
        hint = "start a new chat, Ctrl+N, or raise --context"
    else:
        hint = go_on
    return f"({words}: {hint})" if hint else f"({words})"
