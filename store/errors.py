"""Errors the store raises; the CLI and the TUI turn them into one-line messages."""

import errno
import os
import shutil
import sqlite3
from pathlib import Path


class StoreError(Exception):
    """Base class: anything the user can act on that went wrong in the store."""


class NameTaken(StoreError):
    """A name that must be unique is already in use."""


class NotFound(StoreError):
    """A named record does not exist."""


class StorageFailed(StoreError):
    """The disk refused a write: it is full, read-only or failing. Whatever was being written
    was rolled back (a transaction) or never given its final name (a file)."""


FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_failure(error: BaseException, path: object) -> StorageFailed | None:
    """The one-line StorageFailed for a disk's refusal (an OSError, or SQLite's own words for it)
    while writing ``path``; None for any other error, which is not the disk's."""
    if isinstance(error, OSError) and error.errno is not None:
        if error.errno in FULL_ERRNOS:
            return StorageFailed(f"the disk holding {path} is full: free some space and run the command again")
        if error.errno in READ_ONLY_ERRNOS:
            return StorageFailed(
                f"{path} cannot be written ({error.strerror}): make it writable, or set DUETTO_HOME "
                "(DUETTO_MODELS for models) to a writable directory"
            )
        return None
    if isinstance(error, sqlite3.Error):
        words = str(error).lower()
        if "disk is full" in words or ("disk i/o error" in words and _nearly_full(path)):
            # SQLite says "disk I/O error" for some writes a full disk refuses (growing its -shm file)
            return StorageFailed(f"the disk holding {path} is full: free some space and run the command again")
        if "readonly" in words or "read-only" in words or ("unable to open" in words and not _writable(path)):
            return StorageFailed(
                f"{path} cannot be written (read-only): make it writable, or set DUETTO_HOME to a writable directory"
            )
        if "disk i/o error" in words:
            return StorageFailed(f"the disk failed writing {path} ({error}): check it, then run the command again")
    return None


NEARLY_FULL_BYTES = 1 << 20
"""Less free space than this under a failed write: the disk is full (a page and its WAL frame,
a few KB, did not fit), not failing."""


def _nearly_full(path: object) -> bool:
    place = Path(str(path))
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        return shutil.disk_usage(place).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _writable(path: object) -> bool:
    """Whether the directory holding ``path`` takes writes (False on a read-only mount, even for root)."""
    return os.access(Path(str(path)).parent, os.W_OK)
