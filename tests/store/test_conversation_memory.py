import sqlite_utils

from duetto.store import conversation_memory as memory_store
from duetto.store import documents as document_store
from duetto.store.conversations import add_user, create_conversation, delete_conversation


def test_documents_attach_once_and_leave_with_either_side(db: sqlite_utils.Database) -> None:
    conversation = create_conversation(db, add_user(db, "ada"))
    notes = document_store.begin_document(db, "notes", None, "x", 1)
    plan = document_store.begin_document(db, "plan", None, "y", 1)

    memory_store.attach_document(db, conversation.id, notes.id)
    memory_store.attach_document(db, conversation.id, notes.id)
    memory_store.attach_document(db, conversation.id, plan.id)
    assert [d.name for d in memory_store.attached_documents(db, conversation.id)] == ["notes", "plan"]

    document_store.remove_document(db, "plan")
    memory_store.detach_document(db, conversation.id, notes.id)
    assert memory_store.attached_documents(db, conversation.id) == []


def test_memory_round_trips_and_goes_with_its_conversation(db: sqlite_utils.Database) -> None:
    conversation = create_conversation(db, add_user(db, "ada"))
    assert memory_store.load_memory(db, conversation.id) is None

    saved = memory_store.ConversationMemory(texts=["user asked about 11 shillings", "lamp"], through_message_id=7)
    memory_store.save_memory(db, conversation.id, saved, tokens=12)

    assert memory_store.load_memory(db, conversation.id) == saved
    delete_conversation(db, conversation.id)
    assert db["conversation_memory"].count == 0
