import numpy as np
import pytest
import sqlite_utils

from duetto.store import documents as store
from duetto.store.conversations import add_user, ensure_user
from duetto.store.errors import NameTaken, NotFound, StoreError


def add_chunks(db: sqlite_utils.Database, document: store.Document, texts: list[str]) -> None:
    for position, text in enumerate(texts):
        store.add_chunk(
            db, document.id, position, text, (position * 10, position * 10 + 10), text[:5], 3,
            np.full(4, position, dtype=np.float32), "model-a",
        )  # fmt: skip


def test_a_document_is_usable_only_once_complete(db: sqlite_utils.Database) -> None:
    document = store.begin_document(db, "notes", "/tmp/notes.txt", "abc", 20)
    add_chunks(db, document, ["the lighthouse keeper", "a green lantern"])

    with pytest.raises(StoreError, match="not fully read"):
        store.get_document(db, "notes")
    store.mark_complete(db, document.id)

    finished = store.get_document(db, "notes")
    assert (finished.chunk_count, finished.memory_tokens, finished.tokens) == (2, 6, 20)
    chunks = store.list_chunks(db, [finished.id])
    assert [chunk.text for chunk in chunks] == ["the lighthouse keeper", "a green lantern"]
    np.testing.assert_array_equal(chunks[1].embedding, np.ones(4, dtype=np.float32))


def test_an_unfinished_document_resumes_only_with_the_same_content(db: sqlite_utils.Database) -> None:
    first = store.begin_document(db, "notes", None, "abc", 20)
    add_chunks(db, first, ["one"])

    assert store.begin_document(db, "notes", None, "abc", 20).id == first.id
    assert store.chunk_positions(db, first.id) == {0}
    with pytest.raises(NameTaken, match="different content"):
        store.begin_document(db, "notes", None, "other", 20)
    store.mark_complete(db, first.id)
    with pytest.raises(NameTaken, match="already exists"):
        store.begin_document(db, "notes", None, "abc", 20)


def test_a_chunk_position_is_stored_once(db: sqlite_utils.Database) -> None:
    document = store.begin_document(db, "notes", None, "abc", 20)
    add_chunks(db, document, ["one"])

    with pytest.raises(Exception, match="UNIQUE"):
        add_chunks(db, document, ["one again"])
    assert len(store.list_chunks(db, [document.id])) == 1


@pytest.mark.parametrize("name", ["", " padded", "a/b", "..", "x'; DROP TABLE documents; --", 'say "hi"', "a\\b"])
def test_names_that_could_escape_or_confuse_are_refused(db: sqlite_utils.Database, name: str) -> None:
    with pytest.raises(StoreError, match="invalid document name"):
        store.begin_document(db, name, None, "abc", 1)
    assert store.list_documents(db) == []


def test_removing_a_document_removes_its_chunks_states_and_index(db: sqlite_utils.Database) -> None:
    document = store.begin_document(db, "notes", None, "abc", 20)
    add_chunks(db, document, ["the lighthouse keeper", "the green lantern"])
    chunk = store.list_chunks(db, [document.id])[0]
    store.put_chunk_state(db, chunk.id, "target", "full", "prefix", 10, b"kv" * 100)

    assert store.get_chunk_state(db, chunk.id, "target", "full", "prefix") == b"kv" * 100
    assert store.get_chunk_state(db, chunk.id, "target", "full", "other prefix") is None
    assert store.chunk_state_bytes(db, document.id) == 200
    assert store.keyword_ranks(db, [document.id], "Where is the LANTERN?")[0] == chunk.id + 1

    store.remove_document(db, "notes")
    for table in ("chunks", "chunk_states"):
        assert db[table].count == 0
    assert store.keyword_ranks(db, [document.id], "lantern") == []
    with pytest.raises(NotFound):
        store.remove_document(db, "notes")


def test_keyword_ranking_survives_query_syntax(db: sqlite_utils.Database) -> None:
    document = store.begin_document(db, "notes", None, "abc", 20)
    add_chunks(db, document, ['the "quoted" AND NOT word', "other text"])

    assert len(store.keyword_ranks(db, [document.id], 'AND NOT "quoted" * ( OR')) == 1
    assert store.keyword_ranks(db, [document.id], "?!") == []


def test_chunks_with_a_saved_state_are_found_by_variant_and_prefix(db: sqlite_utils.Database) -> None:
    document = store.begin_document(db, "notes", None, "abc", 20)
    add_chunks(db, document, ["one", "two", "three"])
    first, second, _ = store.list_chunks(db, [document.id])
    store.put_chunk_state(db, first.id, "target", "full", "prefix", 1, b"a")
    store.put_chunk_state(db, second.id, "target", "compressed", "prefix", 1, b"b")

    assert store.chunks_with_state(db, [document.id], "target", "full", "prefix") == {first.id}
    assert store.chunks_with_state(db, [document.id], "target", "full", "other") == set()
    assert store.chunks_with_state(db, [document.id], "other model", "full", "prefix") == set()


def test_a_document_belongs_to_the_user_who_added_it(db) -> None:
    ada, default = add_user(db, "ada"), ensure_user(db)
    notes = store.begin_document(db, "notes", None, "abc", 20, ada)
    store.mark_complete(db, notes.id)
    plan = store.begin_document(db, "plan", None, "def", 20)  # no owner named: the default user's

    assert plan.user_id == default.id and notes.user_id == ada.id
    assert [d.name for d in store.list_documents(db, ada)] == ["notes"]
    assert [d.name for d in store.list_documents(db)] == ["notes", "plan"]
    assert store.get_document(db, "notes", ada).id == notes.id
    with pytest.raises(NotFound, match="no document named 'notes'"):
        store.get_document(db, "notes", default)
    with pytest.raises(NotFound):
        store.remove_document(db, "notes", default)
    with pytest.raises(NameTaken, match="another user"):
        store.begin_document(db, "notes", None, "abc", 20, default)
