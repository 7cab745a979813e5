"""A chat turn through the core, as every front-end makes it: what is kept, folded and cited."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetto.app.core.chat import ChatSession, Listeners, StoredChat, runnable_settings
from duetto.app.core.documents import ingest_document
from duetto.app.core.models import Engine, load_engine
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversation_memory import attach_document, load_memory
from duetto.store.conversations import create_conversation, ensure_user, list_messages
from duetto.store.database import open_database
from duetto.store.documents import get_document

SENTENCE = "the cat sat on a mat and then it ran to the door while a dog slept near the warm fire"
WORDS = SENTENCE.split(" ")


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path]) -> Engine:
    return load_engine(tiny_models["target"], tiny_models["draft"], context_length=512, threads=1)


def question(turn: int) -> str:
    return " ".join(WORDS[(turn + offset) % len(WORDS)] for offset in range(12))


def test_a_stored_chat_keeps_each_turn_with_its_stats_and_folds_into_memory_it_keeps(
    engine: Engine, tmp_path: Path
) -> None:
    database = tmp_path / "chat.db"
    db = open_database(database)
    conversation = create_conversation(db, ensure_user(db), "long")
    chat = StoredChat(engine, conversation.id, database_path=database)
    settings = DecodeSettings(max_tokens=16, drafter="lookup")

    turns = [chat.ask(question(turn), settings) for turn in range(24)]

    messages = list_messages(db, conversation.id)
    assert [message.role for message in messages] == ["user", "assistant"] * 24
    assert [message.id for message in messages[1::2]] == [turn.message_id for turn in turns]
    assert messages[-1].stats["tokens"] == turns[-1].stats.tokens
    assert any(turn.folded for turn in turns), "24 turns overflow a 512-token context"
    memory = load_memory(db, conversation.id)
    assert memory is not None and memory.texts == chat.session.window.memory_texts
    restored = StoredChat(engine, conversation.id, database_path=database).session.window
    assert (restored.folded_messages, restored.memory_texts) == (
        chat.session.window.folded_messages, chat.session.window.memory_texts,
    )  # fmt: skip


def test_a_reply_stopped_before_its_first_word_leaves_only_the_question(engine: Engine, tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    db = open_database(database)
    conversation = create_conversation(db, ensure_user(db), "stopped")
    chat = StoredChat(engine, conversation.id, database_path=database)

    long_question = " ".join(WORDS * 8)  # read in pieces: Esc is seen before the first word
    turn = chat.ask(long_question, DecodeSettings(max_tokens=16), Listeners(should_cancel=lambda: True))

    assert turn.stats.finish_reason == "cancelled" and turn.message_id is None
    assert [message.role for message in list_messages(db, conversation.id)] == ["user"]


def test_a_chat_with_documents_answers_from_them_and_cites_them(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    engine = load_engine(tiny_models["target"], tiny_models["draft"], context_length=2048, threads=1)
    database = tmp_path / "chat.db"
    db = open_database(database)
    reader, model_id = engine.reader()
    text = " ".join(["The cat sat on a mat near the door.", "A dog slept by the warm fire."] * 60)
    ingest_document(db, reader, model_id, "story", text)
    conversation = create_conversation(db, ensure_user(db), "about the story")
    attach_document(db, conversation.id, get_document(db, "story").id)

    turn = StoredChat(engine, conversation.id, database_path=database).ask(
        "where did the dog sleep?", DecodeSettings(max_tokens=8)
    )

    assert turn.citations and all(citation.document == "story" for citation in turn.citations)
    stored = list_messages(db, conversation.id)[-1]
    assert stored.stats["citations"] == [{"label": cited.label, "chunk_id": cited.chunk_id} for cited in turn.citations]
    assert stored.stats["document_tokens"] > stored.stats["prompt_tokens"] > 0


def test_an_interrupted_turn_leaves_the_session_as_it_was(engine: Engine) -> None:
    chat = ChatSession(engine)
    chat.ask("the cat sat", DecodeSettings(max_tokens=4))

    def interrupt() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        chat.ask("the dog", DecodeSettings(max_tokens=4), Listeners(should_cancel=interrupt))
    assert [turn["role"] for turn in chat.turns] == ["user", "assistant"]


def test_settings_give_way_to_what_the_engine_has() -> None:
    fast = DecodeSettings(mode="fast", drafter="model")
    settings, note = runnable_settings(fast, has_draft_model=False)
    assert (settings.mode, settings.drafter) == ("exact", "lookup") and "fast mode needs a draft model" in note
    assert runnable_settings(fast, has_draft_model=True) == (fast, "")
    over_documents, _ = runnable_settings(DecodeSettings(), has_draft_model=True, documents=True)
    assert over_documents.drafter == "lookup", "the draft model would have to read the excerpts first"
