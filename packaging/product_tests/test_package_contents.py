"""The wheel carries all of duetto, and every module and command of it runs once installed."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPOSITORY

PACKAGE_FOLDERS = ("app", "engine", "store")


def repository_files() -> list[str]:
    """Every file under app/, engine/ and store/ that git tracks or would track (not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *PACKAGE_FOLDERS],
        cwd=REPOSITORY, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return sorted(name for name in listed if (REPOSITORY / name).is_file())


def built(suffix: str) -> Path:
    found = list(Path(os.environ["DUETTO_DIST"]).glob(f"*{suffix}"))
    assert len(found) == 1, f"expected one {suffix} in {os.environ['DUETTO_DIST']}, found {found}"
    return found[0]


def run_installed(
    installed_env: Path, *arguments: str, cwd: Path | str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A command with the installed environment first on PATH (so ``duetto`` is the installed one)."""
    return subprocess.run(
        arguments, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, cwd=cwd,
        env={**os.environ, **(environment or {}), "PATH": f"{installed_env / 'bin'}:{os.environ['PATH']}"},
    )  # fmt: skip


def test_the_wheel_holds_every_file_of_the_three_packages_and_nothing_else_at_top_level() -> None:
    names = set(zipfile.ZipFile(built(".whl")).namelist())
    files = repository_files()

    assert len(files) > 50
    missing = [name for name in files if f"duetto/{name}" not in names]
    assert not missing, f"files of the repository missing from the wheel: {missing}"
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"duetto"}
    assert "duetto/__main__.py" in names
    assert not any(name.startswith("duetto/tests") for name in names)


def test_the_sdist_holds_every_file_of_the_three_packages() -> None:
    sdist = built(".tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

    missing = [name for name in repository_files() if name not in names]
    assert not missing, f"files of the repository missing from the sdist: {missing}"


def test_every_installed_module_imports(installed_env: Path) -> None:
    script = """
import importlib, json, traceback
from pathlib import Path
import duetto
failures, imported = {}, []
for root in duetto.__path__:  # every .py file installed, namespace folders included
    for path in sorted(Path(root).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # running them is the command itself, checked below
        name = ".".join(("duetto", *(parts[:-1] if parts[-1] == "__init__" else parts)))
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception:
            failures[name] = traceback.format_exc(limit=2)
print(json.dumps({"imported": imported, "failures": failures}))
"""
    result = run_installed(installed_env, str(installed_env / "bin" / "python"), "-c", script, cwd="/")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert not report["failures"], report["failures"]
    expected = {
        "duetto." + name[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for name in repository_files()
        if name.endswith(".py") and not name.endswith("__main__.py")
    }
    assert expected <= set(report["imported"]), sorted(expected - set(report["imported"]))


def test_python_dash_m_duetto_is_the_duetto_command(installed_env: Path) -> None:
    module = run_installed(installed_env, str(installed_env / "bin" / "python"), "-m", "duetto", "--version", cwd="/")
    command = run_installed(installed_env, "duetto", "--version", cwd="/")

    assert module.returncode == 0, module.stderr
    assert module.stdout == command.stdout
    assert module.stdout.startswith("duetto, version ")


def command_paths(installed_env: Path) -> list[list[str]]:
    """Every command and subcommand of the installed CLI, found by walking its click groups."""
    script = """
import json
import click
from duetto.app.cli.main import main
def walk(command, path):
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, [*path, name])
print(json.dumps(list(walk(main, []))))
"""
    result = run_installed(installed_env, str(installed_env / "bin" / "python"), "-c", script, cwd="/")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_command_has_help(installed_env: Path, tmp_path: Path) -> None:
    paths = command_paths(installed_env)
    assert ["ask"] in paths and ["docs", "add"] in paths and ["chat"] in paths
    environment = {"DUETTO_HOME": str(tmp_path / "home"), "DUETTO_MODELS": str(tmp_path / "models")}

    for path in paths:
        result = run_installed(installed_env, "duetto", *path, "--help", cwd=tmp_path, environment=environment)
        assert result.returncode == 0, f"duetto {' '.join(path)} --help: {result.stderr}"
        assert result.stdout.startswith("Usage: duetto"), result.stdout
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists(), "--help fetched or created nothing"


@pytest.mark.parametrize(
    "arguments",
    [["ask", "--mode", "nonsense", "hi"], ["docs", "show", "no-such-document"], ["serve", "--user", "nobody"]],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(installed_env: Path, tmp_path: Path, arguments) -> None:
    environment = {"DUETTO_HOME": str(tmp_path / "home"), "DUETTO_MODELS": str(tmp_path / "models")}
    result = run_installed(installed_env, "duetto", *arguments, cwd=tmp_path, environment=environment)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
