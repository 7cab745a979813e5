"""The chat app's keys: one table that makes the bindings, the F1 help and the command palette.

Every F-key action also has a Ctrl or Alt chord, because terminals, tmux and SSH clients often
swallow F-keys (and macOS terminals send Alt only with "Option as Meta" on, hence both). A user
can rebind any action in ``keys.yaml`` in duetto's home (``DUETTO_HOME``), by the action's name::

    regenerate: ctrl+r
    help: f1,ctrl+underscore

Textual applies the file as a keymap over these defaults (``App.set_keymap``), so the help and
the palette, which read the keys in effect, say what the keys are now.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from textual.binding import Binding
from textual.keys import format_key

from duetto.store import locations
from duetto.store.errors import StoreError

KEYS_FILE_NAME = "keys.yaml"
KEY_NAME = re.compile(r"^[a-z0-9_]+(\+[a-z0-9_]+)*$|^[^\s,+]$")
"""A key as Textual names it (``ctrl+shift+k``, ``f2``, ``underscore``) or one character."""


@dataclass(frozen=True)
class KeyAction:
    id: str
    """The binding's id and action: the name a user rebinds it by in keys.yaml."""
    keys: str
    """The default keys, comma-separated in Textual's spelling (``f2,alt+r``)."""
    title: str
    """What the palette lists it as."""
    help: str
    """What it does, for F1."""
    priority: bool = True
    """Handled before the focused widget sees the key. Text boxes would take it otherwise: a
    terminal sends Alt+Y as a key whose character is "y", which the prompt box would type, and
    the prompt box binds Ctrl+Y, F6 and F7 itself. The app refuses actions while a dialog is open
    (``DuettoApp.check_action``), so there the key reaches the dialog."""

    def binding(self, keys: str | None = None) -> Binding:
        return Binding(keys or self.keys, self.id, self.title, id=self.id, priority=self.priority)


APP_KEYS: tuple[KeyAction, ...] = (
    KeyAction("quit", "ctrl+q", "Quit", "quit"),
    KeyAction("help", "f1,alt+h", "Help: every key", "this help"),
    KeyAction(
        "cancel_reply",
        "escape",
        "Stop reply",
        "stop the reply being written (the partial reply is kept)",
        priority=False,
    ),
    KeyAction("new_chat", "ctrl+n", "New chat", "start a new chat"),
    KeyAction(
        "regenerate",
        "ctrl+r",
        "Regenerate the last reply",
        "write the last reply again (it is replaced)",
    ),
    KeyAction(
        "continue_reply",
        "ctrl+g",
        "Continue the last reply",
        "go on with a reply that was stopped or cut at the token limit",
    ),
    KeyAction(
        "edit_last",
        "alt+e",
        "Edit my last message",
        "edit your last message and send it again (the reply after it is replaced)",
    ),
    KeyAction("copy_reply", "ctrl+y", "Copy the last reply", "copy the last reply"),
    KeyAction("copy_code", "alt+y", "Copy the last reply's code", "copy the last code block of the last reply"),
    KeyAction("search", "ctrl+f", "Search chats", "search every message of your chats"),
    KeyAction("export_chat", "ctrl+s", "Export this chat", "save this chat as Markdown in the current directory"),
    KeyAction("toggle_sidebar", "ctrl+b", "Show or hide the chat list", "show or hide the chat list"),
    KeyAction("cycle_mode", "ctrl+t", "Switch mode", "switch mode: exact → fast → target"),
    KeyAction("rename_chat", "f2,alt+r", "Rename this chat", "rename this chat"),
    KeyAction("settings", "f3,alt+s", "Settings", "settings: mode, temperature, drafter, …"),
    KeyAction("switch_user", "f4,alt+u", "Switch user", "switch user (their chats, settings, plugin), or add one"),
    KeyAction("toggle_draft_sources", "f5,alt+c", "Colour the draft's text", "colour the draft's text (model, lookup)"),
    KeyAction("documents", "f6,ctrl+o", "Documents", "documents: attach to this chat, read a file in"),
    KeyAction("sources", "f7,alt+o", "Open a cited source", "open a chunk the last document answer cited"),
    KeyAction("delete_chat", "f8,alt+d", "Delete this chat", "delete this chat (asks first)"),
    KeyAction(
        "switch_pair", "f10,alt+m", "Models for this chat", "models for this chat: switch the draft and target pair"
    ),
    KeyAction(
        "system_prompt", "f9,alt+i", "System prompt", "this chat's system prompt: a saved persona or your own words"
    ),
)

OTHER_KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the prompt"),
    ("Ctrl+J", "new line in the prompt (also Shift+Enter or Alt+Enter where the terminal sends them)"),
    ("Up / Down", "earlier prompts, on the prompt box's first or last line"),
    ("Shift+Tab", "select messages; then c copies one, e edits yours, 1–9 copy its code blocks"),
    ("click", "a code block copies it"),
    ("Ctrl+P", "command palette: every action by name"),
)
"""Keys that belong to a widget rather than the app, for the help."""

PASTE_NOTE = "A paste longer than 6,000 characters is offered to be kept as a document."


APP_ACTIONS = frozenset(action.id for action in APP_KEYS)


def app_bindings() -> list[Binding]:
    return [action.binding() for action in APP_KEYS]


def keys_in_effect(keymap: Mapping[str, str]) -> list[tuple[KeyAction, str]]:
    """Each action with its keys after the user's keymap, as shown to the user (``F2 / Alt+R``)."""
    return [(action, key_label(keymap.get(action.id, action.keys))) for action in APP_KEYS]


def key_label(keys: str) -> str:
    """``f2,alt+r`` as a user reads it: ``F2 / Alt+R``."""
    return " / ".join(_key_name(key.strip()) for key in keys.split(",") if key.strip())


def _key_name(key: str) -> str:
    *modifiers, name = key.split("+")
    shown = {"escape": "Esc", "enter": "Enter", "tab": "Tab", "space": "Space"}.get(name)
    if shown is None:
        shown = name.upper() if len(name) == 1 or (name[0] == "f" and name[1:].isdigit()) else format_key(name)
    return "+".join([*(modifier.capitalize() for modifier in modifiers), shown])


def help_rows(keymap: Mapping[str, str]) -> list[tuple[str, str]]:
    """(keys, what they do) for every key of the app, for F1."""
    return [*OTHER_KEYS, *((label, action.help) for action, label in keys_in_effect(keymap))]


class KeysFileError(StoreError):
    """keys.yaml cannot be used; the message names the file and what is wrong."""


def keys_file() -> Path:
    return locations.home_dir() / KEYS_FILE_NAME


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """The user's key bindings by action name (empty when there is no file)."""
    path = path or keys_file()
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise KeysFileError(f"{path}: cannot read it ({type(error).__name__}); the default keys are in use") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KeysFileError(f"{path}: expected lines of 'action: keys'; the default keys are in use")
    known = {action.id for action in APP_KEYS}
    unknown = sorted(str(name) for name in data if name not in known)
    if unknown:
        raise KeysFileError(f"{path}: no action named {', '.join(unknown)}; the actions are {', '.join(sorted(known))}")
    keymap: dict[str, str] = {}
    for name, keys in data.items():
        pieces = keys if isinstance(keys, list) else str(keys).split(",") if isinstance(keys, str) else [keys]
        named = [piece.strip() for piece in pieces if isinstance(piece, str) and piece.strip()]
        if not named or len(named) != len(pieces) or any(not KEY_NAME.match(key) for key in named):
            raise KeysFileError(f"{path}: {name} needs keys such as 'ctrl+r' or 'f2,alt+r', not {keys!r}")
        keymap[name] = ",".join(named)
    return keymap


def clashes(keymap: Mapping[str, str]) -> Iterable[str]:
    """Keys two actions would share after the keymap (the later one would never run)."""
    owners: dict[str, str] = {}
    for action in APP_KEYS:
        for key in keymap.get(action.id, action.keys).split(","):
            if key in owners:
                yield f"{key} is bound to both {owners[key]} and {action.id}"
            owners[key] = action.id
