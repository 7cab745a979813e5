"""Errors the store raises; the CLI and the TUI turn them into one-line messages."""


class StoreError(Exception):
    """Base class: anything the user can act on that went wrong in the store."""


class NameTaken(StoreError):
    """A name that must be unique is already in use."""


class NotFound(StoreError):
    """A named record does not exist."""
