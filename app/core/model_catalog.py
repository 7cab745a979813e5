"""One view of every model a user can name: the manifest's and the ones they imported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from duetto.engine.errors import ModelMissing, UnknownModel
from duetto.engine.fetch import is_present, model_path
from duetto.engine.manifest import Manifest
from duetto.store.errors import NotFound
from duetto.store.model_registry import get_imported_model, list_imported_models


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    origin: Literal["manifest", "imported"]
    path: Path
    present: bool
    size: int
    sha256: str
    roles: tuple[str, ...]
    family: str
    license: str

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["path"] = str(self.path)
        data["roles"] = list(self.roles)
        return data


def list_catalog(manifest: Manifest, db: sqlite_utils.Database, models_dir: Path) -> list[CatalogEntry]:
    entries = [
        CatalogEntry(
            name=spec.name,
            origin="manifest",
            path=model_path(spec, models_dir),
            present=is_present(spec, models_dir),
            size=spec.size,
            sha256=spec.sha256,
            roles=spec.roles,
            family=spec.family,
            license=spec.license,
        )
        for spec in manifest.models.values()
    ]
    entries += [
        CatalogEntry(
            name=model.name,
            origin="imported",
            path=model.path,
            present=model.path.is_file() and model.path.stat().st_size == model.size,
            size=model.size,
            sha256=model.sha256,
            roles=(),
            family=model.architecture,
            license="",
        )
        for model in list_imported_models(db)
    ]
    return entries


def resolve_model_path(name_or_path: str, manifest: Manifest, db: sqlite_utils.Database, models_dir: Path) -> Path:
    """The file behind a manifest name, an imported name, a manifest file name, or a path.

    Raises UnknownModel for a name nothing knows, ModelMissing for a known model whose file is absent.
    """
    for spec in manifest.models.values():
        if name_or_path in (spec.name, spec.file):
            if not is_present(spec, models_dir):
                raise ModelMissing(f"model {spec.name} is not fetched yet; run: duetto models fetch {spec.name}")
            return model_path(spec, models_dir)
    try:
        imported = get_imported_model(db, name_or_path)
    except NotFound:
        pass
    else:
        if not imported.path.is_file():
            raise ModelMissing(f"imported model {imported.name}'s file {imported.path} is gone; import it again")
        return imported.path
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        return candidate
    raise UnknownModel(f"{name_or_path!r} is neither a known model nor an existing file; see: duetto models list")
