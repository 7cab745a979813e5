"""``duetto serve`` on the real default pair, through the ``openai`` client: the same answer as
``duetto ask``, and an editor's request with the file as its prediction."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pytest
from duetto_cli import run_duetto
from duetto_server import live_server

pytestmark = pytest.mark.real_models

QUESTION = "What is 2 + 3? Answer with a full sentence."
PUBLIC_PROMPTS = Path(__file__).resolve().parents[2] / "app" / "bench" / "public_prompts.jsonl"


def test_the_server_answers_as_ask_does_and_drafts_from_a_prediction(real_models: Path, tmp_path: Path) -> None:
    environment = {"DUETTO_MODELS": str(real_models)}
    # Target mode: one token per evaluation on both sides, so the two answers are the same bytes
    # (exact mode may part at a near-tie where batched and single-token evaluation round apart).
    asked = run_duetto("ask", QUESTION, "--mode", "target", "--max-tokens", "24", "--json", "--context", "4096",
                       env=environment)  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    with live_server("--context", "4096", log_path=tmp_path / "serve.log", env=environment) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none")
        assert [model.id for model in client.models.list()] == ["qwen2.5-coder-1.5b", "duetto"]
        reply = client.chat.completions.create(
            model="qwen2.5-coder-1.5b", messages=[{"role": "user", "content": QUESTION}], max_tokens=24,
            extra_body={"duetto": {"mode": "target"}},
        )  # fmt: skip
        assert reply.choices[0].message.content == json.loads(asked.stdout)["text"]
        assert "5" in reply.choices[0].message.content

        edit = next(json.loads(line) for line in PUBLIC_PROMPTS.read_text().splitlines() if '"edit-tokenize' in line)
        code = re.search(r"```python\n(.*?)```", edit["prompt"], re.DOTALL).group(1)
        streamed = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": edit["prompt"]}], max_tokens=160, stream=True,
            stream_options={"include_usage": True}, prediction={"type": "content", "content": code},
        )  # fmt: skip
        chunks = list(streamed)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert "def tokenize" in text
        usage = chunks[-1].usage
        assert usage.completion_tokens_details.accepted_prediction_tokens > 0
        finishing = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason)
        assert (
            finishing.model_extra["timings"]["draft_n_accepted"]
            >= usage.completion_tokens_details.accepted_prediction_tokens
        )
    assert "Traceback" not in server.log()
