"""``duetto serve`` on the tiny models, through the clients people use: the ``openai`` package,
simonw/llm, and raw HTTP for what a client library hides (event lines, error statuses)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from duetto_cli import run_duetto
from duetto_server import LiveServer, live_server, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from test_plugin_lora import write_lora  # noqa: E402

PROMPT = "the cat sat on a mat and then it ran to the door"
TOKENS = 24


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The duetto home every process of this module shares (the server, ask, docs, users)."""
    directory = tmp_path_factory.mktemp("serve-home")
    return {"DUETTO_HOME": str(directory / "home"), "DUETTO_MODELS": str(directory / "models"), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path]) -> tuple[str, ...]:
    return ("--target", str(tiny_models["target"]), "--draft-model", str(tiny_models["draft"]), "--threads", "1",
            "--context", "1024")  # fmt: skip


@pytest.fixture(scope="module")
def server(models, home, tmp_path_factory) -> LiveServer:
    with live_server(*models, log_path=tmp_path_factory.mktemp("serve-log") / "serve.log", env=home) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)


def asked(models, home, prompt: str = PROMPT, *extra: str) -> dict:
    """``duetto ask --json``'s answer to ``prompt`` on the same models."""
    result = run_duetto("ask", prompt, *models, "--max-tokens", str(TOKENS), "--json", *extra, env=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_models_health_and_the_same_answer_as_ask(server: LiveServer, client: openai.OpenAI, models, home) -> None:
    served = [model.id for model in client.models.list()]
    assert served[0] == "target" and "duetto" in served  # the target file's name, and the alias
    assert client.models.retrieve("duetto").id == "duetto"
    with urllib.request.urlopen(f"{server.root}/health") as response:
        assert json.loads(response.read())["status"] == "ok"

    reply = client.chat.completions.create(
        model="duetto", messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS, temperature=0
    )
    expected = asked(models, home)
    assert reply.choices[0].message.content == expected["text"]
    assert reply.choices[0].finish_reason == ("length" if expected["stats"]["finish_reason"] == "length" else "stop")
    assert reply.usage.completion_tokens == expected["stats"]["tokens"]
    assert reply.usage.prompt_tokens == expected["stats"]["prompt_tokens"]
    timings = reply.model_extra["timings"]
    stats = reply.model_extra["duetto"]["stats"]
    assert timings["predicted_n"] == stats["tokens"] and timings["draft_n"] == stats["drafted"]
    assert timings["draft_n_accepted"] == stats["accepted"] and stats["mode"] == "exact"


def test_content_parts_and_the_developer_role_read_as_text(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(
        model="duetto",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
        max_tokens=8,
    )
    parts = client.chat.completions.create(
        model="duetto",
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
        max_completion_tokens=8,
        extra_body={"an_unknown_field": True},
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content


def test_streaming_with_usage_matches_the_whole_reply(server: LiveServer, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="duetto", messages=[{"role": "user", "content": PROMPT}],
                                           max_tokens=TOKENS)  # fmt: skip
    chunks = list(
        client.chat.completions.create(
            model="duetto",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].model_extra["timings"]["predicted_n"] == whole.usage.completion_tokens
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])

    events = server.events("/chat/completions", {"model": "duetto", "messages": [{"role": "user", "content": PROMPT}],
                                                 "max_tokens": 4, "stream": True})  # fmt: skip
    assert events[-1] == "[DONE]" and all(
        json.loads(payload)["object"] == "chat.completion.chunk" for payload in events[:-1]
    )


def test_stop_strings_end_the_reply_and_never_leak(client: openai.OpenAI) -> None:
    reference = (
        client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS
        )
        .choices[0]
        .message.content
    )
    assert len(reference) > 12, reference
    stop = reference[6:10]
    expected = reference[: reference.index(stop)]
    for stops in (stop, [stop, "never written §"]):
        reply = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS, stop=stops
        )
        assert reply.choices[0].message.content == expected
        assert reply.choices[0].finish_reason == "stop"
        streamed = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS, stop=stops, stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == expected


def test_a_prediction_drafts_and_the_reply_stays_the_same(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    plain = client.chat.completions.create(model="duetto", messages=messages, max_tokens=TOKENS)
    text = plain.choices[0].message.content
    predicted = client.chat.completions.create(
        model="duetto", messages=messages, max_tokens=TOKENS, prediction={"type": "content", "content": text}
    )
    assert predicted.choices[0].message.content == text
    # Whether a draft pays is the cost model's call, from timings (tests/engine/test_decoder.py shows
    # a prediction drafted from); here: the counts reach the client and add up.
    details = predicted.usage.completion_tokens_details
    stats = predicted.model_extra["duetto"]["stats"]
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == (
        stats["prediction_accepted"], stats["prediction_rejected"])  # fmt: skip
    assert details.accepted_prediction_tokens <= predicted.model_extra["timings"]["draft_n_accepted"]
    assert details.accepted_prediction_tokens + details.rejected_prediction_tokens <= stats["drafted"]
    assert plain.usage.completion_tokens_details.accepted_prediction_tokens == 0
    wrong = client.chat.completions.create(
        model="duetto", messages=messages, max_tokens=TOKENS,
        prediction={"type": "content", "content": [{"type": "text", "text": "zebra " * 30}]},
    )  # fmt: skip
    assert wrong.choices[0].message.content == text


def test_text_completions_stream_and_not(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="duetto", prompt="the cat sat on", max_tokens=12)
    assert whole.object == "text_completion" and whole.usage.completion_tokens == 12
    streamed = list(client.completions.create(model="duetto", prompt="the cat sat on", max_tokens=12, stream=True))
    assert "".join(chunk.choices[0].text for chunk in streamed) == whole.choices[0].text
    predicted = client.completions.create(
        model="duetto", prompt="the cat sat on", max_tokens=12,
        extra_body={"prediction": {"type": "content", "content": whole.choices[0].text}},
    )  # fmt: skip
    assert predicted.choices[0].text == whole.choices[0].text


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server: LiveServer, client: openai.OpenAI) -> None:
    chat = {"model": "duetto", "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        (b"{not json", {}, 400),
        (json.dumps(chat).encode(), {"Content-Type": "text/plain"}, 415),
        (b"[1, 2]", {}, 400),
        ({**chat, "model": "gpt-9"}, {}, 404),
        ({**chat, "max_tokens": -1}, {}, 400),
        ({**chat, "max_tokens": 10**9}, {}, 400),
        ({**chat, "n": 2}, {}, 400),
        ({**chat, "temperature": "hot"}, {}, 400),
        ({**chat, "stop": [1, 2]}, {}, 400),
        ({"model": "duetto", "messages": []}, {}, 400),
        ({"model": "duetto", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, {}, 400),
        ({"model": "duetto", "messages": [{"role": "user", "content": "word " * 2000}]}, {}, 400),
        ({**chat, "user": "nobody"}, {}, 404),
        ({**chat, "duetto": {"documents": ["nothing-here"]}}, {}, 404),
        ({**chat, "duetto": {"mode": "warp"}}, {}, 400),
        ({**chat, "tools": [{"type": "function", "function": {"name": "f"}}]}, {}, 400),
        ({**chat, "response_format": {"type": "json_object"}}, {}, 400),
        ({**chat, "messages": [{"role": "tool", "content": "42", "tool_call_id": "1"}]}, {}, 400),
    ]
    for body, headers, status in cases:
        got, answer, _ = server.post("/chat/completions", body, headers=headers)
        assert got == status, (body[:80], answer)
        error = answer["error"]
        assert error["message"] and error["type"] and "\n" not in error["message"], answer
    too_long = {**chat, "messages": [{"role": "user", "content": "word " * 2000}]}
    assert server.post("/chat/completions", too_long)[1]["error"]["code"] == "context_length_exceeded"
    # An oversized body is refused on its Content-Length, before it is read.
    connection = http.client.HTTPConnection(server.root.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/v1/chat/completions")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(9 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "larger than" in json.loads(response.read())["error"]["message"]
    connection.close()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="duetto", messages=[{"role": "user", "content": "hi"}], max_tokens=0)
    assert client.chat.completions.create(model="duetto", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "Traceback" not in server.log()


def test_a_client_that_leaves_mid_stream_stops_its_reply(server: LiveServer, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="duetto", messages=[{"role": "user", "content": PROMPT}], max_tokens=400, stream=True,
        extra_body={"duetto": {"mode": "target"}},
    )  # fmt: skip
    for index, _ in enumerate(stream):
        if index == 2:
            break
    stream.close()
    assert wait_until(lambda: "a reply stopped after" in server.log()), server.log()
    stopped_at = int(server.log().split("a reply stopped after ")[1].split(" ")[0])
    assert stopped_at < 400
    reply = client.chat.completions.create(model="duetto", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert reply.usage.completion_tokens <= 3


def test_concurrent_clients_are_all_answered_in_turn(client: openai.OpenAI) -> None:
    expected = client.chat.completions.create(model="duetto", messages=[{"role": "user", "content": PROMPT}],
                                              max_tokens=12).choices[0].message.content  # fmt: skip
    answers: list[str | None] = [None] * 6

    def ask(index: int) -> None:
        stream = index % 2 == 0
        reply = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": PROMPT}], max_tokens=12, stream=stream
        )
        answers[index] = (
            "".join(chunk.choices[0].delta.content or "" for chunk in reply if chunk.choices)
            if stream
            else reply.choices[0].message.content
        )

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [expected] * 6


def test_a_full_queue_refuses_with_retry_after_and_keys_are_checked(models, home, tmp_path: Path) -> None:
    with live_server(*models, "--max-waiting", "0", "--api-key", "sekret", log_path=tmp_path / "serve.log",
                     env=home) as server:  # fmt: skip
        body = {"model": "duetto", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 300,
                "duetto": {"mode": "target"}}  # fmt: skip
        status, answer, _ = server.post("/chat/completions", body, headers={"Authorization": "Bearer wrong"})
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
        results: list[tuple[int, dict, dict]] = []
        together = threading.Barrier(4)  # all four at once: threads started one by one on a busy host
        # could each find the last one's reply (0.2 s on the tiny model) already over

        def post() -> None:
            together.wait(timeout=60)
            results.append(server.post("/chat/completions", body, headers={"Authorization": "Bearer sekret"}))

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        statuses = sorted(status for status, _, _ in results)
        assert len(results) == 4 and set(statuses) <= {200, 503} and statuses[0] == 200, statuses
        refused = [(answer, headers) for status, answer, headers in results if status == 503]
        assert refused, "four requests at once with no room to wait: some are refused"
        assert all(int(headers["retry-after"]) >= 1 and answer["error"]["code"] == "server_busy"
                   for answer, headers in refused)  # fmt: skip
        keyed = openai.OpenAI(base_url=server.url, api_key="sekret")  # retries 503s as clients do
        assert keyed.chat.completions.create(model="duetto", messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_users_and_documents(server: LiveServer, client: openai.OpenAI, tiny_models, home, tmp_path: Path) -> None:
    assert run_duetto("users", "add", "ada", env=home).returncode == 0
    reply = client.chat.completions.create(model="duetto", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                           user="ada")  # fmt: skip
    assert reply.choices[0].message.content is not None
    notes = tmp_path / "notes.txt"
    notes.write_text("The deadline for the report is the ninth of March. " * 20 + "\n\nThe budget is tight.\n")
    added = run_duetto("docs", "add", str(notes), "--model", str(tiny_models["draft"]), "--threads", "1", env=home)
    assert added.returncode == 0, added.stderr
    answer = client.chat.completions.create(
        model="duetto", messages=[{"role": "user", "content": "When is the deadline?"}], max_tokens=8,
        extra_body={"duetto": {"documents": ["notes"]}},
    )  # fmt: skip
    citations = answer.model_extra["duetto"]["citations"]
    assert citations and citations[0]["document"] == "notes"
    assert answer.model_extra["duetto"]["stats"]["document_tokens"] > 0
    # The document is the default user's: ada cannot reach it (nor learn that it is there).
    with pytest.raises(openai.NotFoundError, match="no document named 'notes'"):
        client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": "When is the deadline?"}], max_tokens=8,
            user="ada", extra_body={"duetto": {"documents": ["notes"]}},
        )  # fmt: skip
    mine = tmp_path / "ada.txt"
    mine.write_text("Ada keeps her bicycle in the blue shed behind the house.\n")
    assert run_duetto("docs", "add", str(mine), "--user", "ada", "--model", str(tiny_models["draft"]), "--threads",
                      "1", env=home).returncode == 0  # fmt: skip
    listed = run_duetto("docs", "list", "--user", "ada", "--json", env=home)
    assert [document["name"] for document in json.loads(listed.stdout)] == ["ada"]
    answer = client.chat.completions.create(
        model="duetto", messages=[{"role": "user", "content": "Where is the bicycle?"}], max_tokens=8, user="ada",
        extra_body={"duetto": {"documents": ["ada"]}},
    )  # fmt: skip
    assert answer.model_extra["duetto"]["citations"][0]["document"] == "ada"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": "Where?"}], max_tokens=8,
            extra_body={"duetto": {"documents": ["ada"]}},
        )  # fmt: skip


def test_a_users_plugin_applies_to_their_requests(server: LiveServer, client: openai.OpenAI, models, home,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """A user with a plugin (here an imported LoRA adapter, which changes the target's scores) gets
    replies from the target carrying it; everyone else from the shared one."""
    assert run_duetto("users", "add", "lora-user", env=home).returncode == 0
    target = [models[0], models[1], "--threads", "1"]
    imported = run_duetto("plugin", "import", "--user", "lora-user", str(write_lora(tmp_path / "a.gguf", scale=4.0)),
                          *target, env=home)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    messages = [{"role": "user", "content": PROMPT}]
    shared = client.chat.completions.create(model="duetto", messages=messages, max_tokens=TOKENS)
    personal = client.chat.completions.create(model="duetto", messages=messages, max_tokens=TOKENS, user="lora-user")
    asked_as_them = asked(models, home, PROMPT, "--user", "lora-user")
    assert personal.choices[0].message.content == asked_as_them["text"]
    assert personal.choices[0].message.content != shared.choices[0].message.content, "the adapter changes the reply"
    again = client.chat.completions.create(model="duetto", messages=messages, max_tokens=TOKENS)
    assert again.choices[0].message.content == shared.choices[0].message.content

    assert run_duetto("plugin", "rm", "--user", "lora-user", env=home).returncode == 0
    after = client.chat.completions.create(model="duetto", messages=messages, max_tokens=TOKENS, user="lora-user")
    assert after.choices[0].message.content == shared.choices[0].message.content, "the shared engine serves them"
    assert "lora-user: no plugin any more; their engine is closed" in server.log()


def test_simonw_llm_asks_through_the_server(server: LiveServer, models, home, tmp_path: Path) -> None:
    """A real third-party client: llm with duetto registered as an OpenAI-compatible model."""
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: duetto-local\n  model_name: duetto\n  api_base: {server.url}\n"
    )
    llm = Path(sys.executable).parent / "llm"
    result = subprocess.run(
        [str(llm), "-m", "duetto-local", "-o", "max_tokens", str(TOKENS), "-o", "temperature", "0", "--no-log", PROMPT],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "LLM_USER_PATH": str(tmp_path), "OPENAI_API_KEY": "none"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == asked(models, home)["text"].rstrip("\n")


def test_the_port_in_use_is_one_line_and_ctrl_c_stops_cleanly(server: LiveServer, models, home) -> None:
    port = server.root.rsplit(":", 1)[1]
    taken = run_duetto("serve", "--port", port, *models, env=home)
    assert taken.returncode != 0 and "in use" in taken.stderr and "Traceback" not in taken.stderr
    assert taken.stderr.startswith("duetto: error: ") and taken.stderr.count("\n") == 1, "one line, as every error"
    started = time.monotonic()
    with live_server(*models, log_path=Path(home["DUETTO_HOME"]).parent / "second.log", env=home) as second:
        assert second.post("/chat/completions", {"model": "duetto", "messages": [{"role": "user", "content": "hi"}],
                                                 "max_tokens": 2})[0] == 200  # fmt: skip
    assert second.process.returncode == 0, second.log()
    assert "stopped" in second.log() and "Traceback" not in second.log()
    assert time.monotonic() - started < 120
