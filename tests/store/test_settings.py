import pytest

from duetto.store.conversations import ensure_user, remove_user
from duetto.store.database import open_database
from duetto.store.settings import InvalidSetting, get_setting, get_settings, set_setting, set_settings


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


def test_removing_a_user_removes_their_settings() -> None:
    db = open_database()
    user = ensure_user(db, "alice")
    set_settings(db, user, {"mode": "fast", "temperature": 0.5})
    assert get_settings(db, user, ("mode", "temperature", "never-saved")) == {"mode": "fast", "temperature": 0.5}
    remove_user(db, "alice")
    assert db["user_settings"].count == 0
