"""The user's own GGUF files, registered by ``duetto models import``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from duetto.store import clock
from duetto.store.errors import NameTaken, NotFound
from duetto.store.transactions import writing


@dataclass(frozen=True)
class ImportedModel:
    name: str
    path: Path
    size: int
    sha256: str
    architecture: str


def _from_row(row: dict) -> ImportedModel:
    return ImportedModel(
        name=row["name"],
        path=Path(row["path"]),
        size=row["size"],
        sha256=row["sha256"],
        architecture=row["architecture"],
    )


def ensure_name_free(db: sqlite_utils.Database, name: str) -> None:
    """Raise NameTaken when a model of that name is already imported."""
    if db["imported_models"].count_where("name = ?", [name]):
        raise NameTaken(f"a model named {name!r} is already imported (use --replace or --name)")


def add_imported_model(db: sqlite_utils.Database, model: ImportedModel, *, replace: bool = False) -> None:
    """Record ``model``; a name already taken is an error unless ``replace``."""
    if not replace:
        ensure_name_free(db, model.name)
    with writing(db):
        db["imported_models"].upsert(
            {
                "name": model.name,
                "path": str(model.path),
                "size": model.size,
                "sha256": model.sha256,
                "architecture": model.architecture,
                "imported_at": clock.now(),
            },
            pk="name",
        )


def list_imported_models(db: sqlite_utils.Database) -> list[ImportedModel]:
    return [_from_row(row) for row in db["imported_models"].rows_where(order_by="name")]


def get_imported_model(db: sqlite_utils.Database, name: str) -> ImportedModel:
    rows = list(db["imported_models"].rows_where("name = ?", [name]))
    if not rows:
        raise NotFound(f"no imported model named {name!r}")
    return _from_row(rows[0])


def remove_imported_model(db: sqlite_utils.Database, name: str) -> None:
    get_imported_model(db, name)
    with writing(db):
        db["imported_models"].delete(name)
