"""Every path duetto reads or writes comes from here.

Two environment variables move duetto's state, so that tests, CI and users with
unusual layouts never touch the default directories:

- ``DUETTO_HOME``: the database, users and settings (default: the platform's
  user data directory, e.g. ``~/.local/share/duetto``).
- ``DUETTO_MODELS``: model files, which are large and can be fetched again
  (default: the platform's user cache directory, e.g. ``~/.cache/duetto/models``).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "duetto"


def home_dir() -> Path:
    """The directory for duetto's own state; not created here."""
    configured = os.environ.get("DUETTO_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def models_dir() -> Path:
    """The directory model files are fetched into; not created here."""
    configured = os.environ.get("DUETTO_MODELS")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "models"


def database_path() -> Path:
    return home_dir() / "duetto.db"


def user_dir(user_name: str) -> Path:
    """One user's private files (their plugin weights); not created here.

    ``user_name`` must already be validated (``conversations.validate_user_name``): it becomes a
    path component.
    """
    return home_dir() / "users" / user_name


def generic_readings_dir() -> Path:
    """The target's readings of duetto's generic text, kept to train plugins with; not created here."""
    return home_dir() / "generic-readings"
