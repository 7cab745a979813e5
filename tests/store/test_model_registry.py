from pathlib import Path

import pytest

from duetto.store.database import open_database
from duetto.store.errors import NameTaken, NotFound
from duetto.store.model_registry import (
    ImportedModel,
    add_imported_model,
    get_imported_model,
    list_imported_models,
    remove_imported_model,
)


def model(name: str, path: str = "/models/x.gguf") -> ImportedModel:
    return ImportedModel(name=name, path=Path(path), size=10, sha256="a" * 64, architecture="llama")


def test_imported_models_round_trip_and_names_are_unique() -> None:
    db = open_database()
    add_imported_model(db, model("mine"))
    add_imported_model(db, model("another"))

    assert [m.name for m in list_imported_models(db)] == ["another", "mine"]
    assert get_imported_model(db, "mine") == model("mine")
    with pytest.raises(NameTaken):
        add_imported_model(db, model("mine", "/elsewhere.gguf"))
    add_imported_model(db, model("mine", "/elsewhere.gguf"), replace=True)
    assert get_imported_model(db, "mine").path == Path("/elsewhere.gguf")


def test_removing_a_model_forgets_it() -> None:
    db = open_database()
    add_imported_model(db, model("mine"))
    remove_imported_model(db, "mine")

    with pytest.raises(NotFound):
        get_imported_model(db, "mine")
    with pytest.raises(NotFound):
        remove_imported_model(db, "mine")
