"""One user's plugin files in their own directory, readable by that user only.

A user has at most one plugin: a side plugin trained here (``side-plugin.npz``) or a LoRA adapter
in GGUF made elsewhere (``lora.gguf``). Writing one removes the other, so what applies is never in
doubt. Beside it, ``chat-readings/`` and ``document-readings/`` hold the target's readings of the
user's chat messages and document chunks that the plugin has not learnt from yet (``save_reading``),
taken where the target read them anyway. The directory is created mode
0700 and every file is written mode 0600 under a temporary name, then moved into place, so a
reader never sees half a file.

The engine does not know where users live: callers pass the directory (``store.locations``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from duetto.engine.plugin import PluginError, SidePlugin
from duetto.engine.plugin_training import TargetReading

SIDE_PLUGIN_FILE = "side-plugin.npz"
LORA_FILE = "lora.gguf"
CHAT_READINGS_DIR = "chat-readings"  # one file a chat message, by its id
DOCUMENT_READINGS_DIR = "document-readings"  # one file a document chunk, by its id
READINGS_DIRS = (CHAT_READINGS_DIR, DOCUMENT_READINGS_DIR)
PluginKind = Literal["side", "lora"]
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
PARTIAL_PREFIX = ".partial-"
LEFTOVER_SECONDS = 60
"""A temporary this old is no other write's work in progress: a plugin's is written in well under
a second, once its training is over."""


def ensure_private_directory(directory: Path) -> Path:
    """Create ``directory`` (and parents) if needed and make it 0700."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    os.chmod(directory, DIRECTORY_MODE)
    return directory


def write_private_file(destination: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a 0600 file through ``write``, atomically: a temporary name first, on disk before the
    rename (so that a power cut cannot leave an empty file under the final name), then a rename.
    A temporary left by a process killed mid-write is removed by the next write that succeeds."""
    ensure_private_directory(destination.parent)
    descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=PARTIAL_PREFIX)
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for leftover in destination.parent.glob(PARTIAL_PREFIX + "*"):
        with contextlib.suppress(FileNotFoundError):  # another process's cleanup got there first
            if time.time() - leftover.stat().st_mtime > LEFTOVER_SECONDS:
                leftover.unlink()


def plugin_kind(directory: Path) -> PluginKind | None:
    if (directory / SIDE_PLUGIN_FILE).is_file():
        return "side"
    if (directory / LORA_FILE).is_file():
        return "lora"
    return None


def plugin_file_signature(directory: Path) -> tuple[PluginKind, int, int, int] | None:
    """(kind, inode, modification time in ns, size) of the user's plugin file; None without one.
    A running engine compares it to tell a plugin trained, imported or removed since it took it up
    (each is written under a temporary name and renamed, so a changed file is a new inode)."""
    kind = plugin_kind(directory)
    if kind is None:
        return None
    try:
        stat = (directory / (SIDE_PLUGIN_FILE if kind == "side" else LORA_FILE)).stat()
    except FileNotFoundError:
        return None  # removed between the two looks
    except OSError:
        return kind, -1, -1, -1  # there but unreadable: loading it says why, once
    return kind, stat.st_ino, stat.st_mtime_ns, stat.st_size


def save_side_plugin(directory: Path, plugin: SidePlugin) -> Path:
    """Store ``plugin`` as the user's plugin (replacing an imported LoRA); returns its path."""
    path = directory / SIDE_PLUGIN_FILE
    write_private_file(path, lambda stream: np.savez(stream, **plugin.to_arrays()))
    (directory / LORA_FILE).unlink(missing_ok=True)
    return path


def load_side_plugin(directory: Path) -> SidePlugin:
    path = directory / SIDE_PLUGIN_FILE
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return SidePlugin.from_arrays(arrays)
    except FileNotFoundError as error:
        raise PluginError(f"no side plugin in {directory}") from error
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise PluginError(f"{path} is not a readable plugin file: {error}") from error


def import_lora(directory: Path, source: Path) -> Path:
    """Copy a LoRA GGUF into the user's directory (replacing a side plugin); returns its path.

    The copy, not the original, is what applies: the user may move or delete their file later.
    """
    with open(source, "rb") as original:
        if original.read(4) != b"GGUF":
            raise PluginError(f"{source} is not a GGUF file")
        original.seek(0)
        write_private_file(directory / LORA_FILE, lambda stream: shutil.copyfileobj(original, stream))
    (directory / SIDE_PLUGIN_FILE).unlink(missing_ok=True)
    _forget_all_readings(directory)  # kept for a side plugin, which is gone
    return directory / LORA_FILE


def remove_plugin(directory: Path) -> bool:
    """Delete the user's plugin files (and the readings kept for it); True when there was a plugin."""
    _forget_all_readings(directory)
    removed = False
    for name in (SIDE_PLUGIN_FILE, LORA_FILE):
        if (directory / name).is_file():
            (directory / name).unlink()
            removed = True
    return removed


def plugin_size(directory: Path) -> int:
    """Bytes on disk of the user's plugin (0 without one)."""
    kind = plugin_kind(directory)
    if kind is None:
        return 0
    return (directory / (SIDE_PLUGIN_FILE if kind == "side" else LORA_FILE)).stat().st_size


def save_reading(
    directory: Path, folder: str, number: int, text_digest: str, model: str, reading: TargetReading
) -> Path:
    """Keep the target's reading of one chat message or document chunk (``number``, in ``folder``)
    until the plugin learns from it.

    Hidden states are stored in 16 bits (3 KB a token for a 1,536-wide model): they feed a
    low-rank correction trained in 32 bits, which does not see the difference.
    """
    arrays = reading.to_arrays()
    arrays["hidden"] = reading.hidden.astype(np.float16)
    arrays["text_sha256"] = np.array(text_digest)
    arrays["model"] = np.array(model)
    path = directory / folder / f"{number}.npz"
    write_private_file(path, lambda stream: np.savez(stream, **arrays))
    return path


def load_reading(directory: Path, folder: str, number: int, text_digest: str, model: str) -> TargetReading | None:
    """The reading kept of a message or chunk, if any, and only if it was of this very text by
    ``model`` (a damaged file counts as none: the text is read again)."""
    path = directory / folder / f"{number}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["text_sha256"]) != text_digest or str(stored["model"]) != model:
                return None
            return TargetReading.from_arrays(stored)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def forget_reading(directory: Path, folder: str, number: int) -> None:
    """Delete the reading kept of one message or chunk, if any."""
    (directory / folder / f"{number}.npz").unlink(missing_ok=True)


def forget_readings(directory: Path, folder: str, through_number: int | None = None) -> None:
    """Delete the readings kept in ``folder`` up to ``through_number``: those the plugin has
    learnt from, and those of messages deleted since. None: every reading, and the folder with
    any temporary a killed write left."""
    if through_number is None:
        shutil.rmtree(directory / folder, ignore_errors=True)
        return
    for path in (directory / folder).glob("*.npz"):
        if not path.stem.isdigit() or int(path.stem) <= through_number:
            path.unlink(missing_ok=True)


def _forget_all_readings(directory: Path) -> None:
    for folder in READINGS_DIRS:
        forget_readings(directory, folder)
