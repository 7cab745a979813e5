"""Which files install, found from the tree rather than listed by hand.

Every folder under app/, engine/ and store/ installs as a package beneath the one import
namespace ``duetto`` (app/tui becomes duetto.app.tui), and every file in it that is not Python
source goes with it as package data, so a new module, screen or data folder can never fall out
of the wheel. packaging/check_wheel.sh compares the wheel with the repository's files.
The rest of the metadata is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
TOP_LEVEL = ("app", "engine", "store")
NAMESPACE_FOLDER = "packaging/namespace"
"""Holds ``duetto/__main__.py`` (``python -m duetto``) and nothing else."""
SKIPPED_FOLDERS = {"__pycache__"}
SKIPPED_SUFFIXES = {".py", ".pyc", ".pyo"}


def package_folders() -> dict[str, Path]:
    """{"duetto.app.tui": Path("app/tui"), ...}: every folder under the three top-level ones."""
    folders: dict[str, Path] = {}
    for top in TOP_LEVEL:
        for folder in [ROOT / top, *sorted((ROOT / top).rglob("*"))]:
            relative = folder.relative_to(ROOT)
            if folder.is_dir() and not SKIPPED_FOLDERS.intersection(relative.parts):
                folders["duetto." + ".".join(relative.parts)] = relative
    return folders


def data_files_of(folder: Path) -> list[str]:
    return sorted(
        path.name
        for path in (ROOT / folder).iterdir()
        if path.is_file() and path.suffix not in SKIPPED_SUFFIXES and not path.name.startswith(".")
    )


folders = package_folders()
setup(
    packages=["duetto", *folders],
    package_dir={"duetto": NAMESPACE_FOLDER, **{name: str(folder) for name, folder in folders.items()}},
    package_data={name: data_files_of(folder) for name, folder in folders.items() if data_files_of(folder)},
)
