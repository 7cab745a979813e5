"""A chat turn through the core, as every front-end makes it: what is kept, folded and cited."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetto.app.core.chat import (
    SYSTEM_PROMPT,
    SYSTEM_PROMPT_SETTING,
    ChatSession,
    Listeners,
    StoredChat,
    TurnRefused,
    runnable_settings,
)
from duetto.app.core.documents import ingest_document
from duetto.app.core.models import Engine, load_engine
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversation_memory import attach_document, load_memory
from duetto.store.conversations import create_conversation, ensure_user, list_messages, set_system_prompt
from duetto.store.database import open_database
from duetto.store.documents import get_document
from duetto.store.settings import set_setting

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


def stored_chat(engine: Engine, tmp_path: Path, title: str = "turns") -> tuple[StoredChat, object, int]:
    database = tmp_path / "chat.db"
    db = open_database(database)
    conversation = create_conversation(db, ensure_user(db), title)
    return StoredChat(engine, conversation.id, database_path=database), db, conversation.id


def test_regenerate_replaces_the_last_reply_and_answers_a_question_left_without_one(
    engine: Engine, tmp_path: Path
) -> None:
    chat, db, conversation_id = stored_chat(engine, tmp_path)
    with pytest.raises(TurnRefused, match="no question yet"):
        chat.regenerate(DecodeSettings(max_tokens=4))
    first = chat.ask(question(0), DecodeSettings(max_tokens=6))

    again = chat.regenerate(DecodeSettings(max_tokens=6, temperature=1.0, seed=7))

    messages = list_messages(db, conversation_id)
    assert [message.role for message in messages] == ["user", "assistant"]
    assert messages[1].id == again.message_id
    assert messages[1].content == again.text != first.text, "sampled again (seeded: the tiny models differ)"
    chat.ask(" ".join(WORDS * 8), DecodeSettings(max_tokens=4), Listeners(should_cancel=lambda: True))
    assert list_messages(db, conversation_id)[-1].role == "user", "stopped before a word: the question waits"
    answered = chat.regenerate(DecodeSettings(max_tokens=4))
    assert [message.role for message in list_messages(db, conversation_id)] == ["user", "assistant"] * 2
    assert answered.message_id == list_messages(db, conversation_id)[-1].id


def test_an_edited_message_replaces_it_and_every_later_turn_and_rereads_only_from_there(
    engine: Engine, tmp_path: Path
) -> None:
    chat, db, conversation_id = stored_chat(engine, tmp_path)
    settings = DecodeSettings(max_tokens=6)
    chat.ask(question(0), settings)
    chat.ask(question(1), settings)
    chat.ask(question(2), settings)
    second = list_messages(db, conversation_id)[2]

    turn = chat.edit(second.id, "the dog slept near the fire", settings)

    messages = list_messages(db, conversation_id)
    assert [message.content for message in messages[:2]] == [question(0), messages[1].content]
    assert messages[2].content == "the dog slept near the fire" and messages[3].id == turn.message_id
    assert len(messages) == 4, "the third exchange went with the edited second"
    assert 0 < turn.stats.prompt_read_tokens < turn.stats.prompt_tokens, "the first exchange stays in the KV cache"
    with pytest.raises(TurnRefused, match="only your own"):
        chat.edit(messages[1].id, "not mine", settings)
    with pytest.raises(TurnRefused, match="not in this conversation"):
        other, _, _ = stored_chat(engine, tmp_path, "other")
        other.edit(messages[0].id, "hijack", settings)
    assert len(list_messages(db, conversation_id)) == 4


def test_an_edit_before_folded_turns_forgets_their_memory(engine: Engine, tmp_path: Path) -> None:
    chat, db, conversation_id = stored_chat(engine, tmp_path)
    settings = DecodeSettings(max_tokens=16, drafter="lookup")
    for turn in range(24):
        chat.ask(question(turn), settings)
    assert load_memory(db, conversation_id) is not None
    first = list_messages(db, conversation_id)[0]

    chat.edit(first.id, "start again", settings)

    assert load_memory(db, conversation_id) is None, "the memory held turns that are gone"
    assert chat.session.window.memory_texts == [] and chat.session.window.folded_messages == 0
    assert len(list_messages(db, conversation_id)) == 2


def test_a_reply_cut_at_the_limit_continues_from_its_last_word(engine: Engine, tmp_path: Path) -> None:
    chat, db, conversation_id = stored_chat(engine, tmp_path)
    with pytest.raises(TurnRefused, match="no reply to continue"):
        chat.continue_reply(DecodeSettings(max_tokens=4))
    cut = chat.ask(question(0), DecodeSettings(max_tokens=4))
    assert cut.stats.finish_reason == "length"

    more = chat.continue_reply(DecodeSettings(max_tokens=6))

    [_, reply] = list_messages(db, conversation_id)
    assert reply.id == cut.message_id == more.message_id
    assert reply.content == cut.text + more.text and more.text
    assert reply.stats["continued"] is True and reply.stats["tokens"] == cut.stats.tokens + more.stats.tokens
    whole = chat.session.turns[-1]["content"]
    assert whole == reply.content


def test_the_system_prompt_is_the_conversations_else_the_profiles_else_duettos(engine: Engine, tmp_path: Path) -> None:
    chat, db, conversation_id = stored_chat(engine, tmp_path)
    assert chat.system_prompt == SYSTEM_PROMPT
    set_setting(db, ensure_user(db), SYSTEM_PROMPT_SETTING, "Answer in French.")
    assert StoredChat(engine, conversation_id, database_path=tmp_path / "chat.db").system_prompt == "Answer in French."
    set_system_prompt(db, conversation_id, "You are a pirate.")
    reopened = StoredChat(engine, conversation_id, database_path=tmp_path / "chat.db")
    assert reopened.system_prompt == "You are a pirate."
    assert reopened.session.window.system_prompt == "You are a pirate."
    target = engine.decoder.target
    prompt = reopened.session.window.prompt_tokens([{"role": "user", "content": "hello"}], 16)
    assert "You are a pirate." in "".join(target.token_text(token) for token in prompt)


def test_a_regenerated_reply_stopped_before_its_first_word_keeps_the_old_one(engine: Engine, tmp_path: Path) -> None:
    chat, db, conversation_id = stored_chat(engine, tmp_path)
    chat.ask(" ".join(WORDS * 6), DecodeSettings(max_tokens=4))
    before = list_messages(db, conversation_id)
    other, _, _ = stored_chat(engine, tmp_path, "another chat")
    other.ask(" ".join(reversed(WORDS * 6)), DecodeSettings(max_tokens=4))  # the KV cache holds it now

    turn = chat.regenerate(DecodeSettings(max_tokens=4), Listeners(should_cancel=lambda: True))

    assert turn.message_id is None and list_messages(db, conversation_id) == before


def test_turns_folded_out_of_the_prompt_stay_a_source_to_draft_from(engine: Engine) -> None:
    """The memory keeps folded prose compressed; the lookup drafter still sees the turns word for
    word, so a reply that repeats an earlier answer copies it. The reply stays the target's own."""
    chat = ChatSession(engine, window_tokens=200, memory_tokens=40)
    settings = DecodeSettings(mode="target", max_tokens=24)
    first = chat.ask(question(0), settings)
    for turn in range(1, 12):
        chat.ask(question(turn), settings)
        if chat.window.folded_messages:
            break
    assert chat.window.folded_messages >= 2, "the first exchange was folded"
    folded = chat.folded_tokens()
    target = engine.decoder.target
    assert folded[: len(target.tokenize(question(0)))] == target.tokenize(question(0))
    assert target.llm.token_eos() in folded
    drafter = engine.decoder.drafters["lookup"]
    drafter.begin([1, 2, 3], (), folded)
    tokens = target.tokenize(first.text)
    proposal, _ = drafter.find_in_earlier([1, 2, 3, *tokens[:3]], 8)
    assert proposal and proposal == tokens[3 : 3 + len(proposal)], "the folded reply's continuation is drafted"

    prompt = chat.window.prompt_tokens([*chat.turns, {"role": "user", "content": question(0)}], 24)
    reference = engine.decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=24))
    drafting = engine.decoder.reply(
        prompt, DecodeSettings(mode="exact", drafter="lookup", max_tokens=24, fixed_draft_length=8), earlier=folded
    )
    assert drafting.token_ids == reference.token_ids, "what is drafted never changes what is written"
