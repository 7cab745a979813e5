"""The identities stored memory is kept under: a model file's, and a target's with its adapter.

Document chunks, their compressed text and the target's saved KV states are only valid for the
model that made them; memory made by another model is refused rather than misread.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from duetto.engine.model_session import ModelSession


def model_fingerprint(path: Path) -> str:
    """A cheap identity for a model file (name, size, first and last MiB), for stored memory.

    Hashing the whole file would cost seconds per command; this changes whenever the file does
    in practice, and memory made by another model is refused rather than misread.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(f"{path.name}:{size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return "fp:" + digest.hexdigest()[:32]


_fingerprints: dict[tuple[Path, int, int, int], str] = {}


def target_fingerprint(session: ModelSession) -> str:
    """The identity saved KV states are stored under: the model file, and a LoRA adapter when
    one is applied (it changes the KV cache; a side plugin only changes the logits).

    Kept per file version, not per path: a running engine takes up an adapter imported under the
    same name (``Engine.refresh_plugin``), and states made under the old one must not be reused."""
    paths = [session.path]
    lora_path = getattr(session, "lora_path", None)
    if lora_path is not None:
        paths.append(lora_path)
    found = []
    for path in paths:
        stat = path.stat()
        version = (path, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version not in _fingerprints:
            _fingerprints[version] = model_fingerprint(path)
        found.append(_fingerprints[version])
    return "+".join(found)
