"""The research scripts under docs/experiments stay importable against the code as it is now.

They are run by hand (docs/BENCHMARKS.md, docs/PLUGINS.md and docs/experiments/NOTEBOOK.md give
the commands) and load real models, so CI does not run them; importing each one catches a script
left behind by a rename.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "docs" / "experiments"
SCRIPTS = sorted(EXPERIMENTS.rglob("*.py"))


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(EXPERIMENTS)))
def test_a_research_script_imports_and_has_a_main(script: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"experiment_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"
