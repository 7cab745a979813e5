"""llama.cpp's own programs (llama-server, rpc-server, llama-bench, the speculative examples),
built from the llama.cpp sources inside the installed llama-cpp-python's sdist, so that they are
the same llama.cpp as duetto's engine, and cached per machine.

duetto never builds them on its own: the tests that run duetto against a real serving engine
and the peer benchmarks call ``built_tools``; a user can run ``python -m duetto.app.bench.llama_tools``
to build them and print where they are. The first build takes 10-20 minutes on two cores; later
calls find the cache (keyed by the llama-cpp-python version and the build options).

The options are llama.cpp's defaults, as llama-cpp-python's own source build uses them (native
CPU flags, no curl), with the RPC backend on (for ``--rpc``) and the server's web page left out
(it would be fetched at build time).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

import platformdirs

DEFAULT_TOOLS = ("llama-server",)
TARGETS = {"rpc-server": "ggml-rpc-server"}
"""Programs whose CMake target (and binary) has another name than the one people call them by."""
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_RPC=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
)


class ToolBuildError(Exception):
    """The tools could not be built (no sdist reachable, no compiler, a failed build): one line."""


def cache_dir() -> Path:
    configured = os.environ.get("DUETTO_LLAMA_TOOLS")
    if configured:
        return Path(configured)
    options = hashlib.sha256(" ".join(CMAKE_OPTIONS).encode()).hexdigest()[:8]
    cache = Path(platformdirs.user_cache_dir("duetto-tests", appauthor=False))
    return cache / f"llama.cpp-{version('llama-cpp-python')}-{options}"


def built_tools(names: tuple[str, ...] = DEFAULT_TOOLS, *, log=sys.stderr) -> dict[str, Path]:
    """The programs ``names``, built once per machine into ``cache_dir()/bin``; returns their paths."""
    binaries = cache_dir() / "bin"
    missing = [name for name in names if not (binaries / name).is_file()]
    if missing:
        _build(missing, binaries, log)
    return {name: binaries / name for name in names}


def _build(names: list[str], binaries: Path, log) -> None:
    for program in ("cmake", "c++"):
        if shutil.which(program) is None:
            raise ToolBuildError(f"building llama.cpp's tools needs {program}, which is not on PATH")
    work = cache_dir() / "work"
    work.mkdir(parents=True, exist_ok=True)
    source = _sources(work, log)
    build = work / "build"
    print(f"llama_tools: configuring {source}", file=log, flush=True)
    _run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_OPTIONS], log)
    jobs = str(os.cpu_count() or 2)
    print(f"llama_tools: building {', '.join(names)} with {jobs} jobs (10-20 minutes the first time)",
          file=log, flush=True)  # fmt: skip
    targets = [TARGETS.get(name, name) for name in names]
    _run(["cmake", "--build", str(build), "--config", "Release", "-j", jobs, "--target", *targets], log)
    binaries.mkdir(parents=True, exist_ok=True)
    for name in names:
        built = build / "bin" / TARGETS.get(name, name)
        if not built.is_file():
            raise ToolBuildError(f"the build finished without {built}")
        temporary = binaries / f".{name}.partial"
        shutil.copy2(built, temporary)
        os.replace(temporary, binaries / name)  # a tool under its name is always whole


def _sources(work: Path, log) -> Path:
    """llama.cpp's sources from the llama-cpp-python sdist of the installed version."""
    wanted = version("llama-cpp-python")
    unpacked = work / f"llama_cpp_python-{wanted}" / "vendor" / "llama.cpp"
    if (unpacked / "CMakeLists.txt").is_file():
        return unpacked
    with tempfile.TemporaryDirectory(dir=work) as download:
        print(f"llama_tools: downloading the llama-cpp-python {wanted} sdist", file=log, flush=True)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", download,
              f"llama-cpp-python=={wanted}"], log)  # fmt: skip
        archives = list(Path(download).glob("*.tar.gz"))
        if not archives:
            raise ToolBuildError(f"pip found no llama-cpp-python {wanted} sdist")
        with tarfile.open(archives[0]) as archive:
            archive.extractall(work, filter="data")
    if not (unpacked / "CMakeLists.txt").is_file():
        raise ToolBuildError(f"the llama-cpp-python {wanted} sdist has no vendor/llama.cpp")
    return unpacked


def _run(command: list[str], log) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-20:]
        print("\n".join(tail), file=log)
        raise ToolBuildError(f"{' '.join(command[:3])} failed (exit {result.returncode}); its last lines are above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tools", nargs="*", default=list(DEFAULT_TOOLS), help="targets to build (default: %(default)s)")
    arguments = parser.parse_args()
    try:
        for name, path in built_tools(tuple(arguments.tools)).items():
            print(f"{name}\t{path}")
    except ToolBuildError as error:
        sys.exit(f"llama_tools: error: {error}")


if __name__ == "__main__":
    main()
