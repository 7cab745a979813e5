import pytest

from duetto.store.conversations import ensure_user, remove_user
from duetto.store.database import open_database
from duetto.store.settings import (
    ChatSettings,
    InvalidSetting,
    get_setting,
    load_chat_settings,
    save_chat_settings,
    set_setting,
)


def test_values_are_json_per_user_and_replaced_in_place() -> None:
    db = open_database()
    alice, bob = ensure_user(db, "alice"), ensure_user(db, "bob")
    set_setting(db, alice, "plugin", {"name": "terse", "weight": 0.5})
    set_setting(db, alice, "plugin", {"name": "terse", "weight": 0.75})
    assert get_setting(open_database(), alice, "plugin") == {"name": "terse", "weight": 0.75}
    assert get_setting(db, bob, "plugin") is None
    assert get_setting(db, bob, "plugin", default="none") == "none"
    assert db["user_settings"].count == 1


def test_a_value_json_cannot_hold_is_refused() -> None:
    db = open_database()
    with pytest.raises(InvalidSetting, match="JSON"):
        set_setting(db, ensure_user(db), "odd", object())


def test_chat_settings_round_trip_over_the_callers_defaults() -> None:
    db = open_database()
    user = ensure_user(db, "alice")
    defaults = ChatSettings(max_tokens=256)
    assert load_chat_settings(db, user, defaults) == defaults
    set_setting(db, user, "temperature", 0.7)  # one key saved: the rest stay the caller's defaults
    assert load_chat_settings(db, user, defaults) == ChatSettings(max_tokens=256, temperature=0.7)

    chosen = ChatSettings(mode="fast", drafter="lookup", fallback_threshold=0.4, max_draft_run=0,
                          rollback_threshold=2.5, show_draft_sources=True)  # fmt: skip
    save_chat_settings(db, user, chosen)
    assert load_chat_settings(open_database(), user, defaults) == chosen
    assert chosen.decoding()["mode"] == "fast" and "show_draft_sources" not in chosen.decoding()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "turbo"}, "mode must be one of target, exact, fast, not 'turbo'"),
        ({"drafter": "oracle"}, "drafter must be one of"),
        ({"temperature": 7.0}, "temperature must be between 0 and 5, not 7"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"max_tokens": 0}, "max_tokens must be between 1 and 32768, not 0"),
        ({"max_tokens": 12.5}, "max_tokens must be a whole number"),
        ({"fallback_threshold": 1.5}, "fallback_threshold must be between 0 and 1"),
        ({"rollback_threshold": -1.0}, "rollback_threshold must be at least 0"),
        ({"max_draft_run": True}, "max_draft_run must be a whole number"),
        ({"show_draft_sources": "yes"}, "show_draft_sources must be true or false"),
    ],
)
def test_invalid_values_are_refused_with_the_settings_name(values: dict, message: str) -> None:
    with pytest.raises(InvalidSetting, match=message):
        ChatSettings(**values)


def test_a_bad_stored_value_is_reported_with_the_user() -> None:
    db = open_database()
    user = ensure_user(db, "alice")
    set_setting(db, user, "max_tokens", -3)
    with pytest.raises(InvalidSetting, match="saved setting of user 'alice'.*max_tokens"):
        load_chat_settings(db, user)


def test_removing_a_user_removes_their_settings() -> None:
    db = open_database()
    user = ensure_user(db, "alice")
    save_chat_settings(db, user, ChatSettings())
    remove_user(db, "alice")
    assert db["user_settings"].count == 0


def test_the_chat_settings_defaults_are_the_engines() -> None:
    # The store keeps its own defaults (it does not import the engine); they must not drift apart.
    # Only the reply length differs on purpose: a chat answer may run longer than the engine's default.
    from duetto.engine.decoder import DecodeSettings

    chat_defaults = ChatSettings().decoding()
    assert chat_defaults.pop("max_tokens") == 1024
    for name, value in chat_defaults.items():
        assert value == getattr(DecodeSettings(), name), name
