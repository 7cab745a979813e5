"""Users, conversations and messages: what the chat keeps between sessions."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from typing import Any, Literal

import sqlite_utils

from duetto.store import clock, locations
from duetto.store.errors import NameTaken, NotFound, StoreError
from duetto.store.transactions import writing

DEFAULT_USER = "default"
USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class User:
    id: int
    name: str


@dataclass(frozen=True)
class Conversation:
    id: int
    user_id: int
    title: str
    created_at: str
    updated_at: str
    system_prompt: str | None = None
    """This conversation's own system prompt; None: the profile's default."""
    settings: dict[str, Any] | None = None
    """This conversation's own decoding settings (by the chat settings' names); None: the profile's."""


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: Role
    content: str
    stats: dict[str, Any] | None
    created_at: str


def validate_user_name(name: str) -> str:
    if not USER_NAME_PATTERN.match(name):
        raise StoreError(f"invalid user name {name!r}: use up to 64 letters, digits, '.', '_' or '-'")
    return name


def add_user(db: sqlite_utils.Database, name: str) -> User:
    validate_user_name(name)
    with writing(db):  # the checks and the insert in one transaction: two processes adding at once
        if db["users"].count_where("name = ?", [name]):
            raise NameTaken(f"user {name!r} already exists")
        # Each user's plugin lives in users/NAME/: on a file system that ignores case (macOS's and
        # Windows' defaults) "Alice" and "alice" would share one directory, and one user's removal
        # would delete the other's weights. The default user is made on first use whatever an
        # older duetto let in, and its name's other cases are kept free for it.
        taken = [] if name == DEFAULT_USER else _same_but_for_case(db, name)
        if name != DEFAULT_USER and name.lower() == DEFAULT_USER:
            taken.append(DEFAULT_USER)
        if taken:
            raise NameTaken(
                f"user {taken[0]!r} already exists: names that differ only in case would share one plugin "
                "folder on macOS and Windows; choose another name"
            )
        user_id = db["users"].insert({"name": name, "created_at": clock.now()}).last_pk
    return User(id=user_id, name=name)


def _same_but_for_case(db: sqlite_utils.Database, name: str) -> list[str]:
    """Other users whose names differ from ``name`` only in case."""
    rows = db.execute("SELECT name FROM users WHERE lower(name) = lower(?) AND name != ?", [name, name])
    return [other for (other,) in rows]


def get_user(db: sqlite_utils.Database, name: str) -> User:
    rows = list(db["users"].rows_where("name = ?", [name]))
    if not rows:
        raise NotFound(f"no user named {name!r}; see: duetto users list")
    return User(id=rows[0]["id"], name=rows[0]["name"])


def ensure_user(db: sqlite_utils.Database, name: str = DEFAULT_USER) -> User:
    try:
        return get_user(db, name)
    except NotFound:
        return add_user(db, name)


def named_user(db: sqlite_utils.Database, name: str) -> User:
    """The user called ``name``: the default user is made on first use, any other must have been
    added (NotFound otherwise)."""
    return ensure_user(db, DEFAULT_USER) if name == DEFAULT_USER else get_user(db, validate_user_name(name))


def user_by_id(db: sqlite_utils.Database, user_id: int) -> User:
    rows = list(db["users"].rows_where("id = ?", [user_id]))
    if not rows:
        raise NotFound(f"no user {user_id}")
    return User(id=rows[0]["id"], name=rows[0]["name"])


def list_users(db: sqlite_utils.Database) -> list[User]:
    return [User(id=row["id"], name=row["name"]) for row in db["users"].rows_where(order_by="name")]


def remove_user(db: sqlite_utils.Database, name: str) -> None:
    """Delete the user's private files (plugin weights), then the user and, by cascade, their rows."""
    user = get_user(db, name)
    directory = locations.user_dir(validate_user_name(user.name))
    # first: a user whose rows are gone must not leave weights behind; but a folder that another
    # user's name (as an older duetto let in, differing only in case) may share is left alone
    if directory.exists() and not _same_but_for_case(db, user.name):
        shutil.rmtree(directory)
    with writing(db):
        db.execute("DELETE FROM users WHERE id = ?", [user.id])


def _conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        id=row["id"],
        user_id=row["user_id"],
        title=row["title"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        system_prompt=row.get("system_prompt"),
        settings=json.loads(row["settings"]) if row.get("settings") else None,
    )


def create_conversation(db: sqlite_utils.Database, user: User, title: str = "New chat") -> Conversation:
    created = clock.now()
    with writing(db):
        conversation_id = (
            db["conversations"]
            .insert(
                {"user_id": user.id, "title": title.strip() or "New chat", "created_at": created, "updated_at": created}
            )
            .last_pk
        )
    return get_conversation(db, conversation_id)


def get_conversation(db: sqlite_utils.Database, conversation_id: int) -> Conversation:
    rows = list(db["conversations"].rows_where("id = ?", [conversation_id]))
    if not rows:
        raise NotFound(f"no conversation {conversation_id}")
    return _conversation(rows[0])


def owned_conversation(db: sqlite_utils.Database, conversation_id: int, owner: User) -> Conversation:
    """``owner``'s conversation ``conversation_id``; another user's is not found, as if absent."""
    conversation = get_conversation(db, conversation_id)
    if conversation.user_id != owner.id:
        raise NotFound(f"no conversation {conversation_id}")
    return conversation


def list_conversations(db: sqlite_utils.Database, user: User, title_filter: str = "") -> list[Conversation]:
    """The user's conversations, most recently active first; ``title_filter`` matches case-insensitively."""
    rows = db["conversations"].rows_where(
        "user_id = ? AND title LIKE ? ESCAPE '\\'",
        [user.id, "%" + title_filter.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"],
        order_by="updated_at DESC, id DESC",
    )
    return [_conversation(row) for row in rows]


def rename_conversation(db: sqlite_utils.Database, conversation_id: int, title: str) -> Conversation:
    if not title.strip():
        raise StoreError("a conversation title cannot be empty")
    get_conversation(db, conversation_id)
    with writing(db):
        db["conversations"].update(conversation_id, {"title": title.strip()})
    return get_conversation(db, conversation_id)


def set_system_prompt(db: sqlite_utils.Database, conversation_id: int, prompt: str | None) -> Conversation:
    """Give the conversation its own system prompt (None or blank: back to the profile's)."""
    get_conversation(db, conversation_id)
    with writing(db):
        db["conversations"].update(conversation_id, {"system_prompt": prompt if prompt and prompt.strip() else None})
    return get_conversation(db, conversation_id)


def set_conversation_settings(
    db: sqlite_utils.Database, conversation_id: int, settings: dict[str, Any] | None
) -> Conversation:
    """Keep the conversation's own settings (None: the profile's from now on)."""
    get_conversation(db, conversation_id)
    with writing(db):
        db["conversations"].update(conversation_id, {"settings": json.dumps(settings) if settings else None})
    return get_conversation(db, conversation_id)


def delete_conversation(db: sqlite_utils.Database, conversation_id: int) -> None:
    get_conversation(db, conversation_id)
    with writing(db):
        db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])


def add_message(
    db: sqlite_utils.Database,
    conversation_id: int,
    role: Role,
    content: str,
    stats: dict[str, Any] | None = None,
) -> Message:
    created = clock.now()
    with writing(db):
        message_id = (
            db["messages"]
            .insert(
                {
                    "conversation_id": conversation_id,
                    "role": role,
                    "content": content,
                    "stats": json.dumps(stats) if stats is not None else None,
                    "created_at": created,
                }
            )
            .last_pk
        )
        db["conversations"].update(conversation_id, {"updated_at": created})
    return Message(id=message_id, conversation_id=conversation_id, role=role, content=content, stats=stats,
                   created_at=created)  # fmt: skip


def _message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        stats=json.loads(row["stats"]) if row["stats"] else None,
        created_at=row["created_at"],
    )


def list_messages(db: sqlite_utils.Database, conversation_id: int) -> list[Message]:
    return [_message(row) for row in db["messages"].rows_where("conversation_id = ?", [conversation_id], order_by="id")]


def get_message(db: sqlite_utils.Database, message_id: int) -> Message:
    rows = list(db["messages"].rows_where("id = ?", [message_id]))
    if not rows:
        raise NotFound(f"no message {message_id}")
    return _message(rows[0])


def delete_messages_from(db: sqlite_utils.Database, conversation_id: int, message_id: int) -> int:
    """Delete message ``message_id`` and every later one of the conversation (a turn edited or
    written again replaces what followed it), and the memory of folded turns if it reached
    them; returns how many messages went."""
    with writing(db):
        deleted = db.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND id >= ?", [conversation_id, message_id]
        ).rowcount
        db.execute(
            "DELETE FROM conversation_memory WHERE conversation_id = ? AND through_message_id >= ?",
            [conversation_id, message_id],
        )
    return deleted


def replace_message(db: sqlite_utils.Database, message_id: int, content: str, stats: dict[str, Any] | None) -> Message:
    """A message's new text and stats (a reply continued where it stopped)."""
    with writing(db):
        db["messages"].update(
            message_id, {"content": content, "stats": json.dumps(stats) if stats is not None else None}
        )
    return get_message(db, message_id)


@dataclass(frozen=True)
class MessageHit:
    """A message that matched a search, with its conversation and the matching words marked."""

    conversation: Conversation
    message_id: int
    role: Role
    snippet: str
    """The text around the match; matched words between ``SNIPPET_MARKS``."""

    def marked(self, opening: str, closing: str) -> str:
        """The snippet with its matched words between ``opening`` and ``closing``."""
        return self.snippet.replace(SNIPPET_MARKS[0], opening).replace(SNIPPET_MARKS[1], closing)


SNIPPET_MARKS = ("\x02", "\x03")
"""Control characters, which no message holds, around matched words (any visible mark could be in the text)."""


def fts_query(text: str) -> str:
    """The user's words as an FTS5 query that finds messages holding all of them (each word
    quoted, so that ``-``, ``:``, ``*`` or ``OR`` in what they typed are words, not operators;
    the last one matches as a prefix, for search as you type)."""
    printable = "".join(character if character.isprintable() else " " for character in text)
    words = [word.replace('"', '""') for word in printable.split()]
    if not words:
        return ""
    return " ".join(f'"{word}"' for word in words[:-1]) + (" " if len(words) > 1 else "") + f'"{words[-1]}"*'


def search_messages(db: sqlite_utils.Database, user: User, text: str, limit: int = 50) -> list[MessageHit]:
    """``user``'s messages that hold every word of ``text``, best match first."""
    query = fts_query(text)
    if not query:
        return []
    opening, closing = SNIPPET_MARKS
    rows = db.execute(
        "SELECT m.id, m.role, snippet(messages_fts, 0, ?, ?, '…', 12), c.id FROM messages_fts"
        " JOIN messages m ON m.id = messages_fts.rowid JOIN conversations c ON c.id = m.conversation_id"
        " WHERE messages_fts MATCH ? AND c.user_id = ? ORDER BY bm25(messages_fts) LIMIT ?",
        [opening, closing, query, user.id, limit],
    ).fetchall()
    conversations = {
        conversation_id: get_conversation(db, conversation_id) for conversation_id in {row[3] for row in rows}
    }
    return [MessageHit(conversations[row[3]], row[0], row[1], " ".join(row[2].split())) for row in rows]


def matching_conversations(db: sqlite_utils.Database, user: User, text: str) -> list[Conversation]:
    """``user``'s conversations whose title or any message holds ``text``'s words, most recent first."""
    by_title = {conversation.id: conversation for conversation in list_conversations(db, user, text)}
    by_message = {hit.conversation.id: hit.conversation for hit in search_messages(db, user, text, limit=500)}
    found = {**by_message, **by_title}
    return sorted(found.values(), key=lambda conversation: (conversation.updated_at, conversation.id), reverse=True)


def import_conversation(
    db: sqlite_utils.Database,
    user: User,
    title: str,
    messages: list[dict[str, Any]],
    *,
    system_prompt: str | None = None,
    settings: dict[str, Any] | None = None,
    created_at: str | None = None,
) -> Conversation:
    """A whole conversation in one transaction (``duetto chats import``): its messages with their
    roles, text, stats and times, or nothing at all."""
    now = clock.now()
    with writing(db):
        conversation_id = db["conversations"].insert(
            {
                "user_id": user.id, "title": title.strip() or "New chat", "created_at": created_at or now,
                "updated_at": now, "system_prompt": system_prompt or None,
                "settings": json.dumps(settings) if settings else None,
            }
        ).last_pk  # fmt: skip
        db["messages"].insert_all(
            {
                "conversation_id": conversation_id,
                "role": message["role"],
                "content": message["content"],
                "stats": json.dumps(message["stats"]) if message.get("stats") is not None else None,
                "created_at": message.get("created_at") or now,
            }
            for message in messages
        )
    return get_conversation(db, conversation_id)


def messages_written_since(db: sqlite_utils.Database, user: User, after_id: int = 0) -> list[tuple[int, str]]:
    """(id, text) of what the user typed in all their chats after message ``after_id``, oldest
    first: what their plugin has not learnt from yet."""
    rows = db.query(
        "SELECT messages.id, messages.content FROM messages"
        " JOIN conversations ON conversations.id = messages.conversation_id"
        " WHERE conversations.user_id = ? AND messages.role = 'user' AND messages.id > ? ORDER BY messages.id",
        [user.id, after_id],
    )
    return [(row["id"], row["content"]) for row in rows]


def messages_written_by(db: sqlite_utils.Database, user: User) -> list[str]:
    """What the user typed in all their chats, oldest first (never the assistant's replies, which are
    the model's words, not theirs): their own text, for training their plugin."""
    rows = db.query(
        "SELECT messages.content FROM messages JOIN conversations ON conversations.id = messages.conversation_id"
        " WHERE conversations.user_id = ? AND messages.role = 'user' ORDER BY messages.id",
        [user.id],
    )
    return [row["content"] for row in rows]
