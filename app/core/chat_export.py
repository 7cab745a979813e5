"""A conversation as Markdown or JSON, and back from JSON: for ``duetto chats`` and the chat app.

The JSON holds what a conversation is (title, system prompt, the model pair and settings it is
answered with, every message with its role, text, stats and time), so ``chats import`` of an
export restores it (the memory of folded turns is made again when the conversation next runs). Files are written
under a temporary name and renamed, so an export is never seen half-written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import sqlite_utils

from duetto.app.core.settings import ChatSettings, conversation_chat_settings
from duetto.app.core.wording import unfinished_reply
from duetto.store.conversations import Conversation, User, import_conversation, list_messages
from duetto.store.errors import StoreError
from duetto.store.settings import InvalidSetting

SPEAKERS = {"user": "You", "assistant": "duetto", "system": "System"}
ROLES = ("system", "user", "assistant")
KEPT_SETTINGS = {"chat", "pair"}
"""What a conversation's settings hold: its chat settings and its model pair (the chat app's)."""
MAX_IMPORT_BYTES = 64 * 1024 * 1024
"""An export larger than this is not a conversation (the context holds far less)."""


class InvalidExport(StoreError):
    """A file to import is not a duetto conversation export; the message names the file and the problem."""


def conversation_json(db: sqlite_utils.Database, conversation: Conversation, user_name: str) -> dict[str, Any]:
    messages = [
        {"role": message.role, "content": message.content, "stats": message.stats, "created_at": message.created_at}
        for message in list_messages(db, conversation.id)
    ]
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "system_prompt": conversation.system_prompt,
        "settings": conversation.settings,
        "user": user_name,
        "messages": messages,
    }


def conversation_markdown(db: sqlite_utils.Database, conversation: Conversation) -> str:
    parts = [f"# {conversation.title}\n"]
    if conversation.system_prompt:
        parts.append(f"*System prompt:* {conversation.system_prompt.strip()}\n")
    for message in list_messages(db, conversation.id):
        parts.append(f"**{SPEAKERS.get(message.role, message.role)}:**\n\n{message.content.rstrip()}\n")
        if message.role == "assistant" and (ending := unfinished_reply(message.stats)):
            parts.append(f"*({ending})*\n")
    return "\n".join(parts)


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {error.strerror or error}") from None


def import_json(db: sqlite_utils.Database, user: User, path: Path) -> Conversation:
    """Restore the conversation exported in ``path`` (``chats export --format json``) for ``user``,
    as a new conversation: every message or, when the file is wrong anywhere, none."""
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise InvalidExport(f"{path}: larger than {MAX_IMPORT_BYTES // 2**20} MiB, not a conversation export")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidExport(f"cannot read {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidExport(f"{path}: not JSON ({error}); import reads `duetto chats export --format json`") from None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise InvalidExport(f'{path}: no "messages" list; import reads `duetto chats export --format json`')
    title = data.get("title") or "Imported chat"
    system_prompt = data.get("system_prompt")
    if not isinstance(title, str) or not (system_prompt is None or isinstance(system_prompt, str)):
        raise InvalidExport(f'{path}: "title" and "system_prompt" must be text')
    messages = []
    for number, message in enumerate(data["messages"], start=1):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise InvalidExport(f"{path}: message {number} needs a role ({', '.join(ROLES)}) and text content")
        stats = message.get("stats")
        created_at = message.get("created_at")
        if not (stats is None or isinstance(stats, dict)) or not (created_at is None or isinstance(created_at, str)):
            raise InvalidExport(f'{path}: message {number}: "stats" must be an object, "created_at" text')
        messages.append({"role": message["role"], "content": message["content"], "stats": stats,
                         "created_at": created_at})  # fmt: skip
    created_at = data.get("created_at") if isinstance(data.get("created_at"), str) else None
    settings = data.get("settings")
    if not (settings is None or isinstance(settings, dict)):
        raise InvalidExport(f'{path}: "settings" must be an object')
    if settings and (unknown := sorted(set(settings) - KEPT_SETTINGS)):
        raise InvalidExport(f'{path}: "settings" holds {", ".join(unknown)}; a chat keeps only "chat" and "pair"')
    try:
        conversation_chat_settings(settings, ChatSettings())
    except InvalidSetting as error:
        raise InvalidExport(f'{path}: "settings": {error}') from None
    return import_conversation(
        db, user, title, messages, system_prompt=system_prompt, settings=settings, created_at=created_at
    )
