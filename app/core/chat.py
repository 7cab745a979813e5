"""A chat turn: from the user's text to the reply, for every front-end.

``ChatSession`` is one conversation on one engine: its turns, the window that keeps its cost
bounded (engine/conversation_window.py: old turns folded into memory by the small model), the
reply budget, and the settings the engine can run. ``StoredChat`` is the same conversation kept
in the database: each turn saved as it happens, its memory with it, its attached documents
answered from (app/core/questions.py). Front-ends only show what these return and pass on what
they report while a reply is written; none of this knows of a terminal, a screen or HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from duetto.app.core.models import Engine
from duetto.app.core.plugins import chat_reading_keeper
from duetto.app.core.questions import Citation, answer_from_documents
from duetto.app.core.wording import shorten
from duetto.engine.conversation_window import ConversationWindow, FoldReport, reply_budget, window_sizes
from duetto.engine.decoder import Decoder, DecodeSettings, KeepReading
from duetto.engine.model_session import ChatMessage, ContextFull
from duetto.engine.plugin_training import TargetReading
from duetto.engine.prompting import fit_conversation
from duetto.engine.remote_target import RemoteDecoder
from duetto.engine.reply_stream import Reply, TextPiece, Written
from duetto.engine.stats import ReplyStats
from duetto.store.conversation_memory import ConversationMemory, attached_documents, load_memory, save_memory
from duetto.store.conversations import (
    Conversation,
    Message,
    add_message,
    delete_messages_from,
    get_conversation,
    get_message,
    list_messages,
    replace_message,
    user_by_id,
)
from duetto.store.database import open_database
from duetto.store.errors import StoreError
from duetto.store.settings import get_setting
from duetto.store.transactions import writing

SYSTEM_PROMPT = "You are duetto, a concise and helpful assistant running offline on the user's computer."
CONVERSATION_TITLE_LENGTH = 40
"""A new conversation is titled with the first words of its first message, up to this many characters."""


def conversation_title(first_message: str) -> str:
    """A new conversation's title: its first message's first words (cut between words)."""
    return shorten(first_message, CONVERSATION_TITLE_LENGTH) or "New chat"


SYSTEM_PROMPT_SETTING = "system_prompt"
"""The user setting that holds a profile's default system prompt (none saved: duetto's own)."""


class TurnRefused(StoreError):
    """A turn cannot be redone, edited or continued as asked; the message says why and what to do."""


def system_prompt_for(db, conversation: Conversation) -> str:
    """The system prompt a conversation is answered with: its own, else its user's default, else duetto's."""
    if conversation.system_prompt:
        return conversation.system_prompt
    return get_setting(db, user_by_id(db, conversation.user_id), SYSTEM_PROMPT_SETTING) or SYSTEM_PROMPT


Progress = Callable[[str], None]
"""Told what a reply is doing before its first token ("reading the prompt 2,048/9,000 tokens…")."""


def runnable_settings(
    settings: DecodeSettings, *, has_draft_model: bool, documents: bool = False
) -> tuple[DecodeSettings, str]:
    """The settings an engine with (or without) a draft model can run, and a note for the user
    when they had to change.

    Without a draft model, fast mode becomes exact mode and the model drafter lookup (``auto``
    already drafts with whatever there is). Over documents, ``auto`` drafts by lookup: the draft
    model would have to read the excerpts first, and lookup copies from them for free.
    """
    note = ""
    if not has_draft_model:
        if settings.mode == "fast":
            settings = replace(settings, mode="exact")
            note = "fast mode needs a draft model; this reply uses exact mode."
        if settings.drafter == "model":
            settings = replace(settings, drafter="lookup")
    if documents and settings.drafter == "auto":
        settings = replace(settings, drafter="lookup")
    return settings, note


TEMPLATE_TAIL_TOKENS = 32
"""At most this many tokens of a chat template follow the user's last message in a prompt."""


@dataclass(frozen=True)
class Listeners:
    """What a front-end hears while a turn runs, and how it stops one."""

    should_cancel: Callable[[], bool] | None = None
    """Checked between decoding steps and between the pieces a long prompt is read in."""
    on_progress: Progress | None = None
    on_written: Callable[[Written], None] | None = None
    """Each decoding step's text, with who wrote each piece."""

    def progress(self, state: str) -> None:
        if self.on_progress is not None:
            self.on_progress(state)


NO_LISTENERS = Listeners()


def complete(
    decoder: Decoder,
    messages: list[ChatMessage],
    settings: DecodeSettings,
    listeners: Listeners = NO_LISTENERS,
    *,
    prediction: str | None = None,
    fit: bool = True,
) -> Reply:
    """The reply to ``messages`` as they are, with no conversation kept (``duetto ask PROMPT``, a
    request that carries its whole history). With ``fit``, the oldest exchanges are dropped if
    they do not fit beside the reply's budget; without, the messages are read whole or not at all
    (ContextFull), as a server's client expects. ``prediction`` is text the reply is expected to
    resemble (the file an editor asks to change): the lookup drafter copies from it; the reply is
    the same without."""
    if fit:
        budget = reply_budget(settings.max_tokens, decoder.target.context_length)
        prompt_tokens = fit_conversation(decoder.target, messages, budget)
    else:
        prompt_tokens = decoder.target.chat_prompt_tokens(messages)
    return continue_tokens(decoder, prompt_tokens, settings, listeners, prediction=prediction)


def complete_text(
    decoder: Decoder,
    prompt: str,
    settings: DecodeSettings,
    listeners: Listeners = NO_LISTENERS,
    *,
    prediction: str | None = None,
) -> Reply:
    """The continuation of raw ``prompt`` text (no chat template; the template's own markers in
    it are read as such, as llama.cpp's server reads them)."""
    prompt_tokens = decoder.target.tokenize(prompt, add_bos=True, special=True)
    return continue_tokens(decoder, prompt_tokens, settings, listeners, prediction=prediction)


def continue_tokens(
    decoder: Decoder,
    prompt_tokens: list[int],
    settings: DecodeSettings,
    listeners: Listeners = NO_LISTENERS,
    *,
    prediction: str | None = None,
) -> Reply:
    """The reply to ready prompt tokens; ContextFull when not even one token of reply fits."""
    room = decoder.target.context_length - len(prompt_tokens) - 1
    if room < 1:
        raise ContextFull(
            f"the prompt is {len(prompt_tokens):,} tokens and the context holds {decoder.target.context_length:,}: "
            "shorten it (or start the model with a larger context)"
        )
    predicted = decoder.target.tokenize(prediction) if prediction else []
    return decoder.reply(
        prompt_tokens, settings, None, listeners.should_cancel, listeners.on_written, prediction=predicted
    )


@dataclass
class Turn:
    """What a chat turn produced."""

    text: str
    stats: ReplyStats
    pieces: list[TextPiece] = field(default_factory=list)
    """The reply's text by source, for the draft-colour view."""
    stored_stats: dict[str, Any] | None = None
    """What was kept with the message: the reply's stats, with a document answer's numbers."""
    message_id: int | None = None
    """The stored reply's id (StoredChat; None when nothing was kept: stopped before a word)."""
    citations: list[Citation] = field(default_factory=list)
    fold_before: FoldReport | None = None
    """Old turns folded before the reply, because the prompt would not fit the window."""
    fold_after: FoldReport | None = None
    """Old turns folded after the reply, because the next turn would probably not fit."""

    @property
    def folded(self) -> bool:
        return self.fold_before is not None or self.fold_after is not None


class ChatSession:
    """One conversation on one engine, held in memory (``duetto ask`` in a loop, the server)."""

    def __init__(
        self,
        engine: Engine,
        *,
        window_tokens: int | None = None,
        memory_tokens: int | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        turns: list[ChatMessage] | None = None,
        memory_texts: list[str] | None = None,
        folded_messages: int = 0,
    ) -> None:
        self.engine = engine
        self.turns: list[ChatMessage] = list(turns or [])
        """User and assistant turns, oldest first (the system prompt is not one)."""
        self._folded_tokens: tuple[list[str], list[int]] = ([], [])
        target = engine.decoder.target
        window, memory = window_sizes(target.context_length, window_tokens)
        memory = memory_tokens or memory
        self.window = ConversationWindow(
            target, engine.compress_text, system_prompt, window_tokens=window, memory_tokens=memory,
            memory_texts=list(memory_texts or []), folded_messages=folded_messages,
        )  # fmt: skip

    def ask(
        self,
        text: str,
        settings: DecodeSettings,
        listeners: Listeners = NO_LISTENERS,
    ) -> Turn:
        """Reply to ``text``. The question and the reply become turns (a reply stopped before its
        first word leaves the question alone); an error or an interrupt leaves no turn behind."""
        kept = len(self.turns)
        self.turns.append({"role": "user", "content": text})
        try:
            return self.reply(settings, listeners)
        except BaseException:
            del self.turns[kept:]
            raise

    def reply(
        self,
        settings: DecodeSettings,
        listeners: Listeners = NO_LISTENERS,
        keep_user_reading: Callable[[TargetReading], None] | None = None,
    ) -> Turn:
        """Reply to the turns as they are (the last one the user's), folding old turns when the
        window would overflow, and again after the reply if the next turn would not fit, so that
        the fold's cost falls while the user reads, not in the next reply's first token.

        ``keep_user_reading`` receives the target's reading of the user's message as the prompt
        is read (``chat_reading_keeper``)."""
        decoder = self.engine.decoder
        budget = reply_budget(settings.max_tokens, decoder.target.context_length)
        self.window.on_fold = lambda: listeners.progress("remembering earlier turns…")
        prompt_tokens = self.window.prompt_tokens(self.turns, budget)
        fold_before = self.window.last_fold

        def reading(read: int, total: int) -> None:
            listeners.progress(f"reading the prompt {read:,}/{total:,} tokens…")

        keep = None
        if keep_user_reading is not None:
            keep = self._user_message_span(prompt_tokens, keep_user_reading)
        reply = decoder.reply(
            prompt_tokens, settings, None, listeners.should_cancel, listeners.on_written,
            on_prompt_progress=reading, earlier=self.folded_tokens(), keep_reading=keep,
        )  # fmt: skip
        if reply.text or reply.stats.finish_reason != "cancelled":
            self.turns.append({"role": "assistant", "content": reply.text})
        fold_after = None
        if reply.stats.finish_reason != "cancelled":
            self.window.fold_ahead(self.turns, budget)
            fold_after = self.window.last_fold
        return Turn(reply.text, reply.stats, reply.pieces, fold_before=fold_before, fold_after=fold_after)

    def _user_message_span(
        self, prompt_tokens: list[int], receive: Callable[[TargetReading], None]
    ) -> KeepReading | None:
        """Where the last turn, the user's, lies in the prompt (it ends the prompt but for the
        template's few tokens that close it and open the reply); None where its tokens alone do
        not occur there as they are (a template that changes the text)."""
        message = self.engine.decoder.target.tokenize(self.turns[-1]["content"])
        last_start = len(prompt_tokens) - len(message)
        for start in range(last_start, max(last_start - TEMPLATE_TAIL_TOKENS, -1), -1):
            if message and prompt_tokens[start : start + len(message)] == message:
                return KeepReading(start, start + len(message), receive)
        return None

    def continue_last(
        self,
        settings: DecodeSettings,
        listeners: Listeners = NO_LISTENERS,
    ) -> Turn:
        """Go on with the last turn, the assistant's (a reply stopped or cut at the token limit):
        the prompt is the turns before it, the template's opening of the assistant's turn and its
        text so far, so the model writes on from its last word. The turn's text grows by what is
        written; the Turn holds only the new text."""
        if not self.turns or self.turns[-1]["role"] != "assistant":
            raise TurnRefused("there is no reply to continue: the last message is not the assistant's")
        decoder = self.engine.decoder
        budget = reply_budget(settings.max_tokens, decoder.target.context_length)
        so_far = self.turns[-1]["content"]
        self.window.on_fold = lambda: listeners.progress("remembering earlier turns…")
        prompt_tokens = self.window.prompt_tokens(self.turns[:-1], budget) + decoder.target.tokenize(so_far)
        fold_before = self.window.last_fold
        if len(prompt_tokens) + 1 >= decoder.target.context_length:
            raise ContextFull("the reply already fills the context window; start a new chat to go on")
        reply = decoder.reply(
            prompt_tokens, settings, None, listeners.should_cancel, listeners.on_written, earlier=self.folded_tokens()
        )
        self.turns[-1] = {"role": "assistant", "content": so_far + reply.text}
        return Turn(reply.text, reply.stats, reply.pieces, fold_before=fold_before)

    def folded_tokens(self) -> list[int]:
        """The turns folded out of the prompt, word for word, for the lookup drafter to copy from
        (the memory holds their prose compressed); each ends with the end-of-turn token, where a
        copy stops. Tokenized again only when they change."""
        if isinstance(self.engine.decoder, RemoteDecoder):
            return []  # a server drafts from what it is sent
        texts = [turn["content"] for turn in self.turns[: self.window.folded_messages]]
        if self._folded_tokens[0] != texts:  # a fold, or an edit of a folded turn
            target = self.engine.decoder.target
            tokens: list[int] = []
            for text in texts:
                tokens += [*target.tokenize(text), target.llm.token_eos()]
            self._folded_tokens = (texts, tokens)
        return self._folded_tokens[1]

    def memory(self, through_message_id: int) -> ConversationMemory | None:
        """The memory of folded turns, for storing beside the conversation (None: nothing folded)."""
        if not self.window.folded_messages:
            return None
        return ConversationMemory(list(self.window.memory_texts), through_message_id)


class StoredChat:
    """A conversation in the database, on one engine.

    Every call opens its own connection (a connection belongs to the thread that opened it, and
    the chat app calls this from worker threads); the messages are read afresh each turn, so a
    message another window added is part of the next prompt. Its system prompt is the
    conversation's, else the profile's default (``system_prompt_for``), unless one is given.
    """

    def __init__(
        self,
        engine: Engine,
        conversation_id: int,
        *,
        database_path: Path | None = None,
        window_tokens: int | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.engine = engine
        self.conversation_id = conversation_id
        self.database_path = database_path
        self.window_tokens = window_tokens
        self.given_system_prompt = system_prompt
        self._load(open_database(database_path))

    def _load(self, db) -> None:
        """The session over the stored conversation: its system prompt, and the memory of its
        folded turns while that still covers messages that exist (an edit may have cut them)."""
        conversation = get_conversation(db, self.conversation_id)
        message_ids = [message.id for message in list_messages(db, self.conversation_id)]
        memory = load_memory(db, self.conversation_id)
        folded = 0
        if memory is not None and memory.through_message_id in message_ids:
            folded = message_ids.index(memory.through_message_id) + 1
        self.system_prompt = self.given_system_prompt or system_prompt_for(db, conversation)
        self.session = ChatSession(
            self.engine, window_tokens=self.window_tokens, system_prompt=self.system_prompt,
            memory_texts=list(memory.texts) if folded else [], folded_messages=folded,
        )  # fmt: skip

    def ask(
        self,
        text: str,
        settings: DecodeSettings,
        listeners: Listeners = NO_LISTENERS,
    ) -> Turn:
        """Save ``text``, reply to it (from the attached documents when there are any) and save
        the reply with its stats, and the conversation's memory when turns were folded.

        The same question still waiting for its reply (the process asking it was killed, the
        laptop slept) is answered, not kept twice: asking again is how a user finishes it."""
        db = open_database(self.database_path)
        messages = list_messages(db, self.conversation_id)
        if not (messages and messages[-1].role == "user" and messages[-1].content == text):
            add_message(db, self.conversation_id, "user", text)
        return self._answer(db, text, settings, listeners)

    def regenerate(self, settings: DecodeSettings, listeners: Listeners = NO_LISTENERS) -> Turn:
        """Write the last reply again: the stored one is replaced once the new one is kept (a
        reply stopped before its first word, or an error, leaves the old one); a question left
        without a reply is answered."""
        db = open_database(self.database_path)
        messages = list_messages(db, self.conversation_id)
        questions = [message for message in messages if message.role == "user"]
        if not questions:
            raise TurnRefused("there is no reply to write again: this chat has no question yet")
        question = questions[-1]
        after = messages[messages.index(question) + 1 :]
        return self._answer(db, question.content, settings, listeners, replacing=after[0] if after else None)

    def edit(self, message_id: int, text: str, settings: DecodeSettings, listeners: Listeners = NO_LISTENERS) -> Turn:
        """Replace the user's message ``message_id`` with ``text`` and answer it: every later
        message goes. The prompt up to the edited message is unchanged, so the engine rereads
        only from there (the decoder keeps the KV cache's common prefix)."""
        db = open_database(self.database_path)
        message = self._own_message(db, message_id)
        if message.role != "user":
            raise TurnRefused("only your own messages can be edited; regenerate a reply instead")
        if not text.strip():
            raise TurnRefused("the edited message is empty")
        delete_messages_from(db, self.conversation_id, message_id)
        self._load(db)
        return self.ask(text, settings, listeners)

    def continue_reply(self, settings: DecodeSettings, listeners: Listeners = NO_LISTENERS) -> Turn:
        """Go on with the last reply where it stopped; the stored reply grows by what is written
        (its stats become the continuation's, marked ``continued``)."""
        db = open_database(self.database_path)
        messages = list_messages(db, self.conversation_id)
        if not messages or messages[-1].role != "assistant":
            raise TurnRefused("there is no reply to continue: ask something first")
        if attached_documents(db, self.conversation_id):
            raise TurnRefused("a document answer cannot be continued; ask a follow-up question instead")
        last = messages[-1]
        self.session.turns = [{"role": message.role, "content": message.content} for message in messages]
        turn = self.session.continue_last(
            runnable_settings(settings, has_draft_model=self.engine.has_draft_model)[0], listeners
        )
        turn.message_id = last.id
        with writing(db):
            if turn.text:
                earlier = last.stats or {}
                stats = {**turn.stats.as_dict(), "continued": True}
                stats["tokens"] = turn.stats.tokens + int(earlier.get("tokens", 0) or 0)
                replace_message(db, last.id, last.content + turn.text, stats)
                turn.stored_stats = stats
            if turn.folded:
                through = [message.id for message in messages][self.session.window.folded_messages - 1]
                memory = self.session.memory(through)
                if memory is not None:
                    save_memory(db, self.conversation_id, memory, self.session.window.memory_length)
        return turn

    def _own_message(self, db, message_id: int) -> Message:
        message = get_message(db, message_id)
        if message.conversation_id != self.conversation_id:
            raise TurnRefused(f"message {message_id} is not in this conversation")
        return message

    def _answer(
        self, db, text: str, settings: DecodeSettings, listeners: Listeners, *, replacing: Message | None = None
    ) -> Turn:
        """Reply to the stored conversation, whose last message is the user's ``text`` (or, with
        ``replacing``, comes right before that message, which the reply replaces when it is kept)."""
        messages = list_messages(db, self.conversation_id)
        if replacing is not None:
            messages = messages[: [message.id for message in messages].index(replacing.id)]
        message_ids = [message.id for message in messages]
        self.session.turns = [{"role": message.role, "content": message.content} for message in messages]
        documents = attached_documents(db, self.conversation_id)
        if documents:
            reader, reader_model = self.engine.reader()
            listeners.progress("answering from documents…")
            answer = answer_from_documents(
                db, self.engine.decoder, reader, reader_model, documents, text,
                runnable_settings(settings, has_draft_model=self.engine.has_draft_model, documents=True)[0],
                should_cancel=listeners.should_cancel, on_written=listeners.on_written,
            )  # fmt: skip
            turn = Turn(answer.text, answer.reply_stats, answer.pieces, answer.stats, citations=answer.citations)
        else:
            question, keeper = messages[-1], None
            if question.role == "user":
                owner = user_by_id(db, get_conversation(db, self.conversation_id).user_id).name
                keeper = chat_reading_keeper(self.engine.decoder.target, owner, question.id, question.content)
            try:
                turn = self.session.reply(
                    runnable_settings(settings, has_draft_model=self.engine.has_draft_model)[0], listeners,
                    keeper.receive if keeper is not None else None,
                )  # fmt: skip
            finally:  # the message stays, whatever became of its reply
                if keeper is not None:
                    keeper.save()
        with writing(db):  # the old reply goes only with the new one kept, and the memory with it
            if turn.text or turn.stats.finish_reason != "cancelled":
                if replacing is not None:
                    delete_messages_from(db, self.conversation_id, replacing.id)
                stored = add_message(
                    db, self.conversation_id, "assistant", turn.text, turn.stored_stats or turn.stats.as_dict()
                )
                turn.message_id = stored.id
                message_ids.append(stored.id)
            if turn.folded:
                memory = self.session.memory(message_ids[self.session.window.folded_messages - 1])
                if memory is not None:
                    save_memory(db, self.conversation_id, memory, self.session.window.memory_length)
        return turn
