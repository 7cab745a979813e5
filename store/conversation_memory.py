"""What a conversation carries besides its messages: attached documents and folded-turn memory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

from duetto.store import clock
from duetto.store.documents import Document, list_documents
from duetto.store.transactions import writing


@dataclass(frozen=True)
class ConversationMemory:
    texts: list[str]
    """Compressed memory blocks, oldest first."""
    through_message_id: int
    """The last message folded into the memory; later messages are still in the window."""


def attach_document(db: sqlite_utils.Database, conversation_id: int, document_id: int) -> None:
    with writing(db):
        db.execute(
            "INSERT OR IGNORE INTO conversation_documents (conversation_id, document_id) VALUES (?, ?)",
            [conversation_id, document_id],
        )


def detach_document(db: sqlite_utils.Database, conversation_id: int, document_id: int) -> None:
    with writing(db):
        db.execute(
            "DELETE FROM conversation_documents WHERE conversation_id = ? AND document_id = ?",
            [conversation_id, document_id],
        )


def attached_documents(db: sqlite_utils.Database, conversation_id: int) -> list[Document]:
    ids = {
        row[0]
        for row in db.execute(
            "SELECT document_id FROM conversation_documents WHERE conversation_id = ?", [conversation_id]
        ).fetchall()
    }
    return [document for document in list_documents(db) if document.id in ids]


def load_memory(db: sqlite_utils.Database, conversation_id: int) -> ConversationMemory | None:
    row = db.execute(
        "SELECT text, through_message_id FROM conversation_memory WHERE conversation_id = ?", [conversation_id]
    ).fetchone()
    if row is None:
        return None
    return ConversationMemory(texts=list(json.loads(row[0])), through_message_id=row[1])


def save_memory(db: sqlite_utils.Database, conversation_id: int, memory: ConversationMemory, tokens: int) -> None:
    with writing(db):
        db.execute(
            "INSERT OR REPLACE INTO conversation_memory "
            "(conversation_id, through_message_id, text, tokens, updated_at) VALUES (?, ?, ?, ?, ?)",
            [
                conversation_id,
                memory.through_message_id,
                json.dumps(memory.texts),
                tokens,
                clock.now(),
            ],
        )
