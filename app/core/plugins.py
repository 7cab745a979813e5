"""What a user's plugin learns from: their own writing, from files and from what they typed in chats.

Training itself (engine/plugin_training.py) and applying a plugin (engine/plugin_session.py) are
the engine's; a user's plugin directory is app/core/models.py's ``user_plugin_dir``.
"""

from __future__ import annotations

from pathlib import Path

from duetto.engine.plugin import PluginError
from duetto.store.conversations import get_user, messages_written_by
from duetto.store.database import open_database


def read_user_text(path: Path) -> str:
    """The text of ``path``; one-line errors for a missing, binary or empty file."""
    try:
        data = path.expanduser().read_bytes()
    except FileNotFoundError:
        raise PluginError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise PluginError(f"{path} is a directory, not a text file") from None
    except OSError as error:
        raise PluginError(f"cannot read {path}: {error.strerror}") from None
    if b"\x00" in data:
        raise PluginError(f"{path} is binary, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginError(f"{path} is not UTF-8 text") from None
    if not text.strip():
        raise PluginError(f"{path} is empty")
    return text


def training_text(user: str, text_paths: tuple[Path, ...], chats: bool) -> tuple[str, dict]:
    """The user's writing from the files and (with ``chats``) their chat messages, as one text,
    and where it came from; one-line errors when there is nothing to learn from."""
    if not text_paths and not chats:
        raise PluginError("nothing to learn from: give --text FILE (their writing) and/or --chats")
    parts = [read_user_text(path) for path in text_paths]
    messages: list[str] = []
    if chats:
        db = open_database()
        messages = [message for message in messages_written_by(db, get_user(db, user)) if message.strip()]
        if not messages and not text_paths:
            raise PluginError(f"{user} has typed nothing in any chat yet; give --text FILE instead")
    sources = {"files": [str(path) for path in text_paths], "chat_messages": len(messages)}
    return "\n\n".join(parts + messages), sources
