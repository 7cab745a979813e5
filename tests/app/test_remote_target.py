"""A remote target on a real llama-server (built from the llama.cpp in llama-cpp-python's sdist),
serving the tiny target on 127.0.0.1 while the tiny draft stays here to write the prompts."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from chat_app import shows_what_is_stored
from duetto_cli import run_duetto
from duetto_server import live_server
from llama_server import free_port, llama_server
from sample_documents import write_document

from duetto.app.bench.llama_tools import built_tools
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ModelSession
from duetto.engine.remote_target import RemoteDecoder, RemoteEndpoint, RemoteTarget, probe
from duetto.engine.stats import ReplyStats

CONTEXT = "512"
"""The tiny models are trained for 512 tokens; llama-server caps its context there."""


@pytest.fixture(scope="module")
def served(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The tiny target behind llama-server, drafting with the tiny draft on the server's side."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # the tiny draft is never sure of itself: p-min 0 lets it draft anyway
    drafting = ("--model-draft", str(tiny_models["draft"]), "--spec-type", "draft-simple", "--draft-p-min", "0")
    with llama_server(tiny_models["target"], "-c", CONTEXT, *drafting, log_path=log) as (url, _):
        yield url


def register(name: str, url: str, tiny_models: dict[str, Path], *extra: str):
    return run_duetto("models", "add-remote", name, "--url", url, "--draft-model", str(tiny_models["draft"]),
                      "--json", *extra)  # fmt: skip


def ask(name: str, tiny_models: dict[str, Path], prompt: str, *extra: str):
    return run_duetto("ask", prompt, "--target", name, "--draft-model", str(tiny_models["draft"]), "--threads", "1",
                      "--max-tokens", "16", "--json", *extra)  # fmt: skip


def test_register_check_and_list_a_remote_target(served: str, tiny_models: dict[str, Path]) -> None:
    added = register("box", served + "/v1/", tiny_models)

    assert added.returncode == 0, added.stderr
    report = json.loads(added.stdout)
    assert report["url"] == served, "stored as the server's root, without /v1"
    assert report["check"]["dialect"] == "llama-server" and report["check"]["same_tokens"] is True
    assert report["check"]["context_length"] == int(CONTEXT)
    listed = json.loads(run_duetto("models", "list", "--json").stdout)["remote_targets"]
    assert listed == [{"name": "box", "url": served, "model": None, "api_key_env": None}]
    checked = run_duetto("models", "check-remote", "box", "--draft-model", str(tiny_models["draft"]))
    assert checked.returncode == 0 and "tokenizer: the same" in checked.stdout
    assert register("box", served, tiny_models).returncode == 1, "a name is registered once (--replace)"
    assert run_duetto("models", "rm-remote", "box").returncode == 0
    assert json.loads(run_duetto("models", "list", "--json").stdout)["remote_targets"] == []


def test_greedy_replies_through_the_server_equal_the_local_target(served: str, tiny_models: dict[str, Path]) -> None:
    assert register("box", served, tiny_models).returncode == 0
    for prompt in ("the cat sat on the", "where did the dog sleep", "def add(a, b):"):
        remote = ask("box", tiny_models, prompt)
        local = run_duetto("ask", prompt, "--target", str(tiny_models["target"]), "--mode", "target", "--threads",
                           "1", "--max-tokens", "16", "--json")  # fmt: skip
        assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
        answer, reference = json.loads(remote.stdout), json.loads(local.stdout)
        assert answer["text"] == reference["text"], prompt
        assert answer["stats"]["drafter"] == "server" and answer["stats"]["mode"] is None, "the server decoded it"
        assert answer["stats"]["prompt_tokens"] == reference["stats"]["prompt_tokens"], (
            "the same prompt, token for token"
        )


def test_the_server_drafts_and_caches_the_prompt_of_a_stored_chat(served: str, tiny_models: dict[str, Path]) -> None:
    assert register("box", served, tiny_models).returncode == 0
    first = ask("box", tiny_models, "the cat sat on the mat and the dog", "-c")
    second = ask("box", tiny_models, "and then what", "-c")

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    stats = json.loads(second.stdout)["stats"]
    assert stats["drafted"] > 0, "the server's own draft model drafted (its timings say so)"
    assert stats["server_cached_tokens"] > 0, "the conversation so far came from the server's prompt cache"
    chat = json.loads(run_duetto("chats", "show", str(json.loads(second.stdout)["chat"]), "--json").stdout)
    assert [message["role"] for message in chat["messages"]] == ["user", "assistant", "user", "assistant"]
    third = run_duetto("ask", "and after that", "-c", "--target", "box", "--draft-model", str(tiny_models["draft"]),
                       "--threads", "1", "--max-tokens", "8")  # fmt: skip
    assert third.returncode == 0 and "decoded by the server" in third.stderr, third.stderr
    assert "mode exact" not in third.stderr and "of the prompt from the server's cache" in third.stderr


def test_a_document_question_sends_the_compact_context(
    served: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    assert register("box", served, tiny_models).returncode == 0
    document = write_document(tmp_path / "story.txt", 400)
    added = run_duetto("docs", "add", str(document), "--model", str(tiny_models["draft"]), "--threads", "1")
    assert added.returncode == 0, added.stderr

    answer = ask("box", tiny_models, "where did the dog sleep", "--doc", "story")

    assert answer.returncode == 0, answer.stderr
    stats = json.loads(answer.stdout)["stats"]
    assert stats["citations"] and stats["sent_tokens"] * 5 <= stats["document_tokens"], stats


def test_an_unreachable_server_or_a_refused_key_is_one_line(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    assert register("gone", closed, tiny_models, "--no-check").returncode == 0

    unreachable = ask("gone", tiny_models, "hello")
    with llama_server(tiny_models["target"], "-c", "256", "--api-key", "sekret", log_path=tmp_path / "key.log") as (
        url, _,
    ):  # fmt: skip
        refused = register("locked", url, tiny_models, "--api-key-env", "DUETTO_TEST_KEY")
        assert run_duetto("models", "add-remote", "locked", "--url", url, "--api-key-env", "DUETTO_TEST_KEY",
                          "--no-check").returncode == 0  # fmt: skip
        wrong = run_duetto("ask", "hello", "--target", "locked", "--draft-model", str(tiny_models["draft"]),
                           env={"DUETTO_TEST_KEY": "guess"})  # fmt: skip
        right = run_duetto("ask", "hello", "--target", "locked", "--draft-model", str(tiny_models["draft"]),
                           "--max-tokens", "4", env={"DUETTO_TEST_KEY": "sekret"})  # fmt: skip

    for result, words in (
        (unreachable, "cannot reach"),
        (refused, "set DUETTO_TEST_KEY"),
        (wrong, "refused the API key (HTTP 401)"),
    ):
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert words in result.stderr.strip().splitlines()[-1], result.stderr
    assert right.returncode == 0, right.stderr


def test_a_server_that_dies_mid_reply_keeps_what_it_wrote(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    local = ModelSession(tiny_models["draft"], context_length=256)
    with llama_server(tiny_models["target"], "-c", "4096", log_path=tmp_path / "dies.log") as (url, process):
        endpoint = RemoteEndpoint("box", url)
        decoder = RemoteDecoder(RemoteTarget(endpoint, local, probe(endpoint)))
        prompt = local.chat_prompt_tokens([{"role": "user", "content": "tell me a long story"}])
        items = decoder.generate(prompt, DecodeSettings(max_tokens=3000, temperature=0.0, mode="target"))
        first = next(items)
        process.kill()
        rest = list(items)
    local.close()

    stats = rest[-1]
    assert isinstance(stats, ReplyStats) and first.reply_tokens >= 1
    assert stats.error is not None and "box" in stats.error, "the reply is marked with what broke"
    assert stats.tokens < 3000


def test_a_server_with_another_vocabulary_is_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with llama_server(tiny_models["other"], "-c", "256", log_path=tmp_path / "other.log") as (url, _):
        refused = register("other", url, tiny_models)
        assert run_duetto("models", "add-remote", "other", "--url", url, "--no-check").returncode == 0
        asked = ask("other", tiny_models, "hello")

    for result in (refused, asked):
        assert result.returncode == 1 and "splits text differently" in result.stderr, result.stderr


async def test_the_chat_app_answers_from_the_remote_target_and_says_where(
    served: str, tiny_models: dict[str, Path], isolated_duetto: Path
) -> None:
    from chat_app import record_notices, wait_for

    from duetto.app.tui.chat_view import ChatView
    from duetto.app.tui.factory import chat_app
    from duetto.app.tui.prompt_input import PromptInput
    from duetto.app.tui.settings_screen import SettingsScreen
    from duetto.app.tui.status_bar import StatusBar

    assert register("box", served, tiny_models).returncode == 0
    # fast mode kept from local use: it does not apply to the server, and is not warned about at every reply
    app = record_notices(chat_app(DecodeSettings(max_tokens=8, mode="fast"), target="box",
                                  draft_model=str(tiny_models["draft"]), threads=1,
                                  database_path=isolated_duetto / "duetto.db"))  # fmt: skip
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None, timeout=60)
        status = app.query_one(StatusBar)
        assert f"target on box at {served}" in status.models
        assert "mode: the server's" in str(status.render()) and "mode exact" not in str(status.render())
        await app.action_cycle_mode()  # the mode key: the server drafts for itself
        assert app.settings.mode == "fast" and "do not apply" in app.notices[-1]
        await pilot.press("f3")  # the settings: duetto's own decoding is closed, the rest open
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        closed = {widget.id for widget in app.screen.query("Select, Input") if widget.disabled}
        assert closed == {"mode", "drafter", "fallback_threshold", "rollback_threshold", "max_draft_run"}
        assert "drafts for itself" in str(app.screen.query_one("#settings-remote").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        app.query_one(PromptInput).text = "the cat sat on the"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.query_one(ChatView).messages()) == 2 and shows_what_is_stored(app))
        reply = app.query_one(ChatView).messages()[1].text
    assert reply.strip(), "the server's reply is shown"
    assert not [notice for notice in app.notices if "fast mode" in notice], app.notices


def test_the_target_split_across_two_rpc_servers_answers_as_the_local_one(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Two rpc-server processes on 127.0.0.1 stand for two machines; llama-server splits the
    target's layers across them with --rpc, and the reply is still the local target's."""
    rpc_server = built_tools(("rpc-server",))["rpc-server"]
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"rpc-{port}.log" for port in ports]
    workers = [
        subprocess.Popen([str(rpc_server), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                         stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for port, log in zip(ports, logs, strict=True)
    ]  # fmt: skip
    try:
        for port in ports:
            wait_for_port(port)
        split = ("-c", CONTEXT, "--rpc", ",".join(f"127.0.0.1:{port}" for port in ports), "-ngl", "99")
        with llama_server(tiny_models["target"], *split, log_path=tmp_path / "rpc.log") as (url, _):
            assert register("split", url, tiny_models).returncode == 0
            remote = ask("split", tiny_models, "the cat sat on the")
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=30)
    local = run_duetto("ask", "the cat sat on the", "--target", str(tiny_models["target"]), "--mode", "target",
                       "--threads", "1", "--max-tokens", "16", "--json")  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["text"] == json.loads(local.stdout)["text"]
    for log in logs:
        assert "Accepted client connection" in log.read_text(), "llama-server used both rpc-servers"


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def test_bench_remote_compares_answers_and_measures_a_team(
    served: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    assert register("box", served, tiny_models).returncode == 0
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(
        json.dumps({"id": f"p{number}", "kind": "open", "prompt": text}) + "\n"
        for number, text in enumerate(["the cat sat on the", "where did the dog sleep", "then the dog"])
    ))  # fmt: skip

    result = run_duetto("bench-remote", "box", "--prompts", str(prompts), "--clients", "3", "--max-tokens", "8",
                        "--target-file", str(tiny_models["target"]), "--draft-model", str(tiny_models["draft"]),
                        "--threads", "1", "--json")  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [row["identical"] for row in report["answers"]] == [True, True, True]
    together = report["team"]["together"]
    assert together["clients"] == 3 and together["answered"] == 3 and together["errors"] == []
    assert together["aggregate_tokens_per_second"] > 0 and "avx2" in report["host"]["flags"]


def test_llama_cpp_pythons_own_server_is_a_second_engine(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """llama-cpp-python's server has no /props or /tokenize: duetto sends the exact prompt text to
    /v1/completions, and the greedy reply is the local target's for the same tokens (the text goes
    without the BOS the prompt begins with: the server adds it, as the tiny models ask for one)."""
    port = free_port()
    log = (tmp_path / "py-server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_models["target"]), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "512", "--n_threads", "1"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    small = ModelSession(tiny_models["draft"], context_length=512)
    target = ModelSession(tiny_models["target"], context_length=512)
    greedy = DecodeSettings(mode="target", max_tokens=16, temperature=0.0)
    try:
        wait_for_port(port, seconds=120)
        added = register("py", f"http://127.0.0.1:{port}", tiny_models)
        endpoint = RemoteEndpoint("py", f"http://127.0.0.1:{port}")
        remote = RemoteDecoder(RemoteTarget(endpoint, small, probe(endpoint)))
        for text in ("the cat sat on the", "where did the dog sleep"):
            prompt = small.chat_prompt_tokens([{"role": "user", "content": text}])
            through_server = remote.reply(prompt, greedy)
            here = Decoder(target).reply(prompt, greedy)
            assert through_server.text == here.text, text
            assert through_server.stats.drafter == "server" and through_server.stats.tokens == 16
    finally:
        server.kill()
        server.wait(timeout=30)
        log.close()
        small.close()
        target.close()

    assert added.returncode == 0, added.stderr
    check = json.loads(added.stdout)["check"]
    assert check["dialect"] == "openai" and check["same_tokens"] is None, "no /tokenize to compare with"


def test_a_server_of_another_dialect_and_a_plugin_that_stays_here_are_said(
    served: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    files = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    plain = subprocess.Popen(files, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        other_dialect = register("web", f"http://127.0.0.1:{port}", tiny_models)
        # vLLM's model listing, as `vllm serve --max-model-len 32768` answers it, read from a file
        (tmp_path / "v1").mkdir()
        (tmp_path / "v1" / "models").write_text(json.dumps({"object": "list", "data": [
            {"id": "other", "object": "model", "max_model_len": 2048},
            {"id": "Qwen/Qwen2.5-Coder-7B-Instruct", "object": "model", "owned_by": "vllm", "max_model_len": 32768},
        ]}))  # fmt: skip
        listing = probe(RemoteEndpoint("gpu", f"http://127.0.0.1:{port}", "Qwen/Qwen2.5-Coder-7B-Instruct"))
    finally:
        plain.kill()
        plain.wait(timeout=30)
    assert other_dialect.returncode == 1 and "Traceback" not in other_dialect.stderr
    assert "HTTP 404" in other_dialect.stderr.strip().splitlines()[-1], other_dialect.stderr
    assert (listing.dialect, listing.context_length) == ("openai", 32768), "the served model's context, not another's"

    text = tmp_path / "alice.txt"
    text.write_text("the cat sat on the warm mat and the dog slept near the door. " * 40)
    assert run_duetto("users", "add", "alice").returncode == 0
    trained = run_duetto("plugin", "train", "--user", "alice", "--text", str(text), "--target",
                         str(tiny_models["target"]), "--threads", "1", "--epochs", "2")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert register("box", served, tiny_models).returncode == 0
    asked = ask("box", tiny_models, "the cat sat on the", "--user", "alice")
    assert asked.returncode == 0, asked.stderr
    assert "alice's plugin stays on this machine and does not apply to the remote target box" in asked.stderr


def test_what_needs_the_large_model_here_says_so_for_a_remote_target(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    assert register("box", closed, tiny_models, "--no-check").returncode == 0
    assert run_duetto("users", "add", "alice").returncode == 0
    story = write_document(tmp_path / "story.txt", 20)
    assert run_duetto("docs", "add", str(story), "--model", str(tiny_models["draft"]), "--threads", "1").returncode == 0

    for command in (
        ["docs", "prepare", "story", "--target", "box"],
        ["plugin", "train", "--user", "alice", "--text", str(story), "--target", "box"],
        ["bench", "--target", "box", "--modes", "target"],
    ):
        result = run_duetto(*command)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (command, result.stderr)
        assert "box is a remote target" in result.stderr.strip().splitlines()[-1], (command, result.stderr)


def test_duetto_serve_over_a_remote_target(served: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """Other tools reach the remote target through duetto: the same replies as ``ask``, streamed,
    documents read here, and a user's plugin said not to apply (one engine serves everyone)."""
    assert register("box", served, tiny_models).returncode == 0
    text = tmp_path / "alice.txt"
    text.write_text("the cat sat on the warm mat and the dog slept near the door. " * 40)
    assert run_duetto("users", "add", "alice").returncode == 0
    story = write_document(tmp_path / "story.txt", 20)
    assert run_duetto("docs", "add", str(story), "--user", "alice", "--model", str(tiny_models["draft"]), "--threads",
                      "1").returncode == 0  # fmt: skip
    trained = run_duetto("plugin", "train", "--user", "alice", "--text", str(text), "--target",
                         str(tiny_models["target"]), "--threads", "1", "--epochs", "2")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    prompt = "where did the dog sleep"
    expected = json.loads(ask("box", tiny_models, prompt).stdout)["text"]

    arguments = ("--target", "box", "--draft-model", str(tiny_models["draft"]), "--threads", "1", "--user", "alice")
    with live_server(*arguments, log_path=tmp_path / "serve.log") as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
        assert [model.id for model in client.models.list()] == ["box", "duetto"]
        messages = [{"role": "user", "content": prompt}]
        reply = client.chat.completions.create(model="box", messages=messages, max_tokens=16, temperature=0)
        assert reply.choices[0].message.content == expected, "alice's plugin stays here: she gets what all get"
        assert reply.model_extra["duetto"]["stats"]["drafter"] == "server"
        streamed = client.chat.completions.create(model="duetto", messages=messages, max_tokens=16, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == expected
        answer = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": "Who found the key?"}], max_tokens=8,
            extra_body={"duetto": {"documents": ["story"]}},
        )  # fmt: skip
        assert answer.model_extra["duetto"]["citations"][0]["document"] == "story"
        stats = answer.model_extra["duetto"]["stats"]
        assert stats["sent_tokens"] > 0 and stats["context_tokens"] < stats["document_tokens"]
    log = (tmp_path / "serve.log").read_text()
    assert "target on box at " + served in log
    assert "alice's plugin stays on this machine and does not apply to the remote target box" in log
