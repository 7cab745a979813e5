import pytest

from duetto.store.conversations import (
    add_message,
    add_user,
    create_conversation,
    delete_conversation,
    ensure_user,
    list_conversations,
    list_messages,
    list_users,
    remove_user,
    rename_conversation,
    search_messages,
)
from duetto.store.database import open_database
from duetto.store.errors import NameTaken, NotFound, StoreError


def test_conversations_and_messages_persist_across_connections() -> None:
    db = open_database()
    user = ensure_user(db)
    chat = create_conversation(db, user, "Sorting help")
    add_message(db, chat.id, "user", "How do I sort a dict by value?")
    add_message(db, chat.id, "assistant", "Use sorted(d.items(), key=...)", {"tokens": 9, "mode": "exact"})

    reopened = open_database()
    [listed] = list_conversations(reopened, ensure_user(reopened))
    assert listed.title == "Sorting help"
    messages = list_messages(reopened, listed.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].stats == {"tokens": 9, "mode": "exact"}


def test_rename_filter_and_most_recent_first() -> None:
    db = open_database()
    user = ensure_user(db)
    first = create_conversation(db, user, "Python 100% tips")
    second = create_conversation(db, user, "Rust lifetimes")
    add_message(db, first.id, "user", "more")

    assert [c.id for c in list_conversations(db, user)] == [first.id, second.id]
    rename_conversation(db, second.id, "Rust borrow checker")
    assert [c.title for c in list_conversations(db, user, "borrow")] == ["Rust borrow checker"]
    assert [c.title for c in list_conversations(db, user, "100%")] == ["Python 100% tips"]
    assert list_conversations(db, user, "_") == []
    with pytest.raises(StoreError):
        rename_conversation(db, first.id, "   ")


def test_deleting_cascades_to_messages_and_users_own_their_chats() -> None:
    db = open_database()
    alice, bob = add_user(db, "alice"), add_user(db, "bob")
    alice_chat = create_conversation(db, alice, "mine")
    add_message(db, alice_chat.id, "user", "hello")
    bob_chat = create_conversation(db, bob, "his")

    assert [c.id for c in list_conversations(db, bob)] == [bob_chat.id]
    delete_conversation(db, alice_chat.id)
    assert db["messages"].count == 0
    remove_user(db, "bob")
    assert db["conversations"].count == 0
    assert [u.name for u in list_users(db)] == ["alice"]
    with pytest.raises(NotFound):
        delete_conversation(db, alice_chat.id)


@pytest.mark.parametrize("name", ["", "a/b", "../x", "x'; DROP TABLE users;--", "a" * 65, "-lead"])
def test_user_names_are_validated(name: str) -> None:
    with pytest.raises(StoreError):
        add_user(open_database(), name)


def test_duplicate_user_names_are_refused() -> None:
    db = open_database()
    add_user(db, "carol")
    with pytest.raises(NameTaken):
        add_user(db, "carol")


def test_search_takes_any_text_a_user_types(db) -> None:
    user = ensure_user(db)
    conversation = create_conversation(db, user, "odd text")
    add_message(db, conversation.id, "user", 'sort "by" value: -x* OR NEAR(c++) a\x00b')
    for typed in ('"', "-", "*", "OR", "NEAR(", "c++", "x:y", "a\x00b", "\x1b[31m", "^", "(", "🙂", "'"):
        search_messages(db, user, typed)  # a result or nothing: never FTS5's syntax error
    assert [hit.conversation.id for hit in search_messages(db, user, "value: -x")] == [conversation.id]


def test_names_an_older_duetto_let_in_that_differ_only_in_case(isolated_duetto) -> None:
    """Before names differing in case were refused: a database holding 'Default' still makes the
    default user on first use, and removing 'Alice' keeps the folder 'alice' may share."""
    from duetto.store import locations

    db = open_database()
    db.execute("INSERT INTO users (name, created_at) VALUES ('Default', 'then'), ('Alice', 'then')")
    db.conn.commit()
    assert ensure_user(db).name == "default"
    add_user(db, "bob")
    with pytest.raises(NameTaken, match="differ only in case"):
        add_user(db, "alice")
    db.execute("INSERT INTO users (name, created_at) VALUES ('alice', 'then')")
    db.conn.commit()
    shared = locations.user_dir("Alice")
    shared.mkdir(parents=True)
    (shared / "side-plugin.npz").write_bytes(b"weights")

    remove_user(db, "Alice")

    assert (shared / "side-plugin.npz").exists(), "the folder another user's name may share is kept"
    assert sorted(user.name for user in list_users(db)) == ["Default", "alice", "bob", "default"]
