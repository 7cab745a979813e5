"""Pair checks already made, so that a fresh ``duetto ask`` does not read both vocabularies again.

A file's key is its resolved path, size and modification time: replacing or editing a model
file makes a new key, and the pair is checked again.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlite_utils

from duetto.store import clock
from duetto.store.transactions import writing


def file_key(path: Path) -> str:
    status = path.stat()
    return f"{path.resolve()}|{status.st_size}|{status.st_mtime_ns}"


def load_pair_check(db: sqlite_utils.Database, draft: Path, target: Path) -> tuple[bool, list[str]] | None:
    """(compatible, problems) of an earlier check of these very files, or None."""
    rows = list(db["pair_checks"].rows_where("draft_key = ? and target_key = ?", [file_key(draft), file_key(target)]))
    if not rows:
        return None
    return bool(rows[0]["compatible"]), json.loads(rows[0]["problems"])


def save_pair_check(
    db: sqlite_utils.Database, draft: Path, target: Path, compatible: bool, problems: list[str]
) -> None:
    with writing(db):
        db["pair_checks"].upsert(
            {
                "draft_key": file_key(draft),
                "target_key": file_key(target),
                "compatible": int(compatible),
                "problems": json.dumps(problems),
                "checked_at": clock.now(),
            },
            pk=("draft_key", "target_key"),
        )
