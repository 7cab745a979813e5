"""Errors the engine raises; the CLI and the TUI turn them into one-line messages."""


class EngineError(Exception):
    """Base class: anything the user can act on that went wrong in the engine."""


class ManifestError(EngineError):
    """The models manifest is malformed (a packaging bug, not a user mistake)."""


class UnknownModel(EngineError):
    """A model or profile name that neither the manifest nor the imports know."""


class InvalidModelFile(EngineError):
    """A file that is not a usable GGUF model."""


class FetchError(EngineError):
    """A model could not be fetched from any of its sources."""


class SourceUnavailable(FetchError):
    """One source cannot be reached (offline, or refused); the next source may still work."""


class ChecksumMismatch(FetchError):
    """Downloaded bytes are not the file the manifest names."""


class ModelMissing(EngineError):
    """A known model whose file is not on this machine (not fetched yet, or moved)."""
