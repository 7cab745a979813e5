"""The chat's settings: validated over the engine's definitions, kept in the store's generic table."""

import pytest

from duetto.app.core.settings import ChatSettings, load_chat_settings, save_chat_settings
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversations import ensure_user
from duetto.store.database import open_database
from duetto.store.settings import InvalidSetting, set_setting


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


def test_a_chat_setting_round_trips_through_the_engines_settings() -> None:
    chosen = ChatSettings(mode="fast", temperature=0.3, max_tokens=77, drafter="model")
    decode = chosen.applied_to(DecodeSettings(stop=("\n\n",)))
    assert (decode.mode, decode.temperature, decode.max_tokens, decode.drafter) == ("fast", 0.3, 77, "model")
    assert decode.stop == ("\n\n",), "what the chat does not set is kept"
    assert ChatSettings.of(decode) == chosen
