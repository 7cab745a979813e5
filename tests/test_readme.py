"""The README's two set-up commands are the ones CI runs and the ones that work."""

from pathlib import Path

from readme_commands import setup_commands

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_has_exactly_two_setup_commands() -> None:
    commands = setup_commands(ROOT / "README.md")

    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/duetto"), "the first command opens the chat app"
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()

    assert setup_commands(ROOT / "README.md")[1] in ci_lines
