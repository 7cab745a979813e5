"""Saved system prompts (personas), each user's own, chosen for a conversation or as a profile's default."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from duetto.store import clock
from duetto.store.conversations import User
from duetto.store.errors import NotFound, StoreError
from duetto.store.transactions import writing

PERSONA_NAME_LENGTH = 40


@dataclass(frozen=True)
class Persona:
    name: str
    prompt: str


def save_persona(db: sqlite_utils.Database, user: User, name: str, prompt: str) -> Persona:
    """Keep ``prompt`` under ``name`` for ``user`` (replacing one of the same name)."""
    name = " ".join(name.split())
    if not name or len(name) > PERSONA_NAME_LENGTH:
        raise StoreError(f"a persona needs a name of 1 to {PERSONA_NAME_LENGTH} characters")
    if not prompt.strip():
        raise StoreError(f"persona {name!r} needs a system prompt")
    with writing(db):
        db["personas"].upsert(
            {"user_id": user.id, "name": name, "prompt": prompt.strip(), "created_at": clock.now()},
            pk=("user_id", "name"),
        )
    return Persona(name, prompt.strip())


def list_personas(db: sqlite_utils.Database, user: User) -> list[Persona]:
    rows = db["personas"].rows_where("user_id = ?", [user.id], order_by="name")
    return [Persona(row["name"], row["prompt"]) for row in rows]


def remove_persona(db: sqlite_utils.Database, user: User, name: str) -> None:
    with writing(db):
        if not db.execute("DELETE FROM personas WHERE user_id = ? AND name = ?", [user.id, name]).rowcount:
            raise NotFound(f"no persona named {name!r}")
