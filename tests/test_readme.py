"""The README's two set-up commands are the ones CI runs and the ones that work."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_the_readme_has_exactly_two_setup_commands() -> None:
    commands = setup_commands()

    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/duetto"), "the first command opens the chat app"
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()

    assert setup_commands()[1] in ci_lines
