"""The installed duetto on the real default pair: the shell, documents, a user's plugin, the chat
app in a real terminal, the README's first command in a fresh clone, and pipx."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import openai
from conftest import REPOSITORY
from duetto_server import live_server
from readme_commands import setup_commands
from terminal import Terminal

QUESTION = "What is 2 + 3? Reply with a full sentence."
DOCUMENT = """# Field notes

The survey team reached the northern ridge on a cold morning. The weather station there
records wind, rain and temperature every ten minutes and sends them home by radio.

The station's radio call sign is KESTREL-7. Its batteries were replaced in March, and the
next visit is planned for the autumn, when the snow poles must be checked as well.
"""


def answer_in_the_chat_app_then_quit(terminal: Terminal, load_timeout: float = 180.0) -> None:
    """Start the chat app, ask QUESTION once the models are loaded, see a speed, quit with Ctrl+Q,
    and find no traceback left on the screen."""
    try:
        terminal.start()
        terminal.wait_for(r"qwen2\.5-coder-1\.5b.*mode exact", timeout=load_timeout)
        terminal.keys(QUESTION, "Enter")
        terminal.wait_for(r"\d+\.\d tok/s")
        terminal.keys("C-q")
        assert terminal.wait_until_exited(), "Ctrl+Q quits"
        assert "Traceback" not in terminal.screen()
    finally:
        terminal.close()


def run(installed_env: Path, environment: dict[str, str], *arguments: str, input_text: str | None = None):
    return subprocess.run(
        [str(installed_env / "bin" / "duetto"), *arguments], capture_output=True, text=True, timeout=600,
        env=environment, input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL,
    )  # fmt: skip


def test_ask_json_answers_with_the_real_pair(installed_env: Path, user_environment: dict[str, str]) -> None:
    result = run(installed_env, user_environment, "ask", QUESTION, "--json")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "5" in answer["text"]
    assert answer["stats"]["tokens"] >= 1
    assert answer["stats"]["mode"] == "exact"


def test_a_document_added_then_asked_about_is_cited(
    installed_env: Path, user_environment: dict[str, str], tmp_path: Path
) -> None:
    notes = tmp_path / "field-notes.md"
    notes.write_text(DOCUMENT, encoding="utf-8")

    added = run(installed_env, user_environment, "docs", "add", str(notes), "--name", "notes")
    assert added.returncode == 0, added.stderr
    answered = run(installed_env, user_environment, "ask", "--doc", "notes", "What is the radio call sign?", "--json")

    assert answered.returncode == 0, answered.stderr
    answer = json.loads(answered.stdout)
    assert "KESTREL-7" in answer["text"]
    assert answer["citations"] and answer["citations"][0]["document"] == "notes"


def test_a_users_plugin_trains_on_their_writing_and_answers_for_them(
    installed_env: Path, user_environment: dict[str, str], tmp_path: Path
) -> None:
    """From the wheel on the real target: train a plugin on the start of the benchmark's diary, then
    train again with nothing new (nothing read), then ask as that user; then learn from a document
    of theirs, whose chunks a question then loads instead of reading."""
    diary = (REPOSITORY / "app" / "bench" / "plugin_texts" / "user-train.txt").read_text(encoding="utf-8")
    writing = tmp_path / "diary.txt"
    writing.write_text(diary[:6000], encoding="utf-8")  # about 1,700 tokens
    assert run(installed_env, user_environment, "users", "add", "diarist").returncode == 0

    trained = run(
        installed_env, user_environment, "plugin", "train", "--user", "diarist", "--text", str(writing), "--json"
    )

    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["held_out_perplexity_plugin"] < report["held_out_perplexity_base"]
    assert report["mean_gate_user"] > report["mean_gate_generic"]
    assert list((Path(user_environment["DUETTO_HOME"]) / "generic-readings").glob("*.npz"))
    again = run(
        installed_env, user_environment, "plugin", "train", "--user", "diarist", "--text", str(writing), "--json"
    )
    assert again.returncode == 0 and json.loads(again.stdout)["up_to_date"], again.stderr
    asked = run(installed_env, user_environment, "ask", "--user", "diarist", QUESTION, "--json")
    assert asked.returncode == 0, asked.stderr
    assert "5" in json.loads(asked.stdout)["text"]  # generic question, the plugin stays out of the way

    # their document: the training reads it once, as questions read it, and questions load that
    (tmp_path / "later.txt").write_text(diary[6000:9000], encoding="utf-8")
    added = run(installed_env, user_environment, "docs", "add", str(tmp_path / "later.txt"), "--user", "diarist")
    assert added.returncode == 0, added.stderr
    from_docs = run(installed_env, user_environment, "plugin", "train", "--user", "diarist", "--docs", "--json")
    assert from_docs.returncode == 0, from_docs.stderr
    sources = json.loads(from_docs.stdout)["sources"]
    assert sources["documents"] == ["later"] and sources["document_chunks_read_now_for_questions_too"] >= 1
    question = ("ask", "--user", "diarist", "--doc", "later", "What was the weather?", "--json")
    answered = run(installed_env, user_environment, *question)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["stats"]["loaded_tokens"] > 0, "the chunks the training read, loaded"


def installed_server(installed_env: Path, environment: dict[str, str], log_path: Path, *arguments: str):
    """The installed ``duetto serve ARGUMENTS`` on a free port, as a context manager (duetto_server)."""
    return live_server(*arguments, log_path=log_path, env=environment, duetto=[str(installed_env / "bin" / "duetto")])


def test_an_openai_client_talks_to_the_installed_server(
    installed_env: Path, user_environment: dict[str, str], tmp_path: Path
) -> None:
    with installed_server(installed_env, user_environment, tmp_path / "serve.log", "--context", "4096") as server:
        client = openai.OpenAI(base_url=server.url, api_key="none")
        reply = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": QUESTION}], max_tokens=32
        )
        assert "5" in reply.choices[0].message.content
        assert reply.model_extra["duetto"]["stats"]["mode"] == "exact"
        streamed = client.chat.completions.create(
            model="duetto", messages=[{"role": "user", "content": QUESTION}], max_tokens=32, stream=True,
        )  # fmt: skip
        assert "5" in "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert server.process.returncode == 0 and "Traceback" not in server.log()


def test_the_chat_app_answers_in_a_real_terminal_and_quits(
    installed_env: Path, user_environment: dict[str, str]
) -> None:
    answer_in_the_chat_app_then_quit(Terminal(str(installed_env / "bin" / "duetto"), user_environment))


def test_the_readme_first_command_opens_a_chat_app_that_answers_from_a_fresh_clone(
    user_environment: dict[str, str], tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPOSITORY), str(clone)], check=True)
    install_and_open = setup_commands(clone / "README.md")[0]
    terminal = Terminal(f"bash -c {json.dumps(install_and_open)}", user_environment, cwd=clone)
    answer_in_the_chat_app_then_quit(terminal, load_timeout=900)  # pip install . first, then the app


def test_pipx_install_of_the_wheel_gives_a_working_duetto(user_environment: dict[str, str], tmp_path: Path) -> None:
    wheel = next(Path(os.environ["DUETTO_DIST"]).glob("*.whl"))
    tools = tmp_path / "pipx-tools"
    subprocess.run(["python3", "-m", "venv", str(tools)], check=True)
    subprocess.run([str(tools / "bin" / "pip"), "install", "--quiet", "pipx"], check=True)
    pipx_environment = {**user_environment, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    subprocess.run([str(tools / "bin" / "pipx"), "install", str(wheel)], check=True, env=pipx_environment)
    duetto = tmp_path / "bin" / "duetto"

    result = subprocess.run(
        [str(duetto), "ask", QUESTION, "--json"], capture_output=True, text=True, timeout=600,
        env=user_environment, stdin=subprocess.DEVNULL,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "5" in json.loads(result.stdout)["text"]


def test_a_coding_session_in_the_chat_app_copies_code_writes_again_searches_and_exports(
    installed_env: Path, user_environment: dict[str, str], tmp_path: Path
) -> None:
    """The chat app from the wheel, in tmux, on the real pair: a function asked for, its code block
    copied (OSC 52 into tmux's buffer), the reply written again, the chat found by a word of its
    reply, exported as Markdown; then the shell sees the same conversation."""
    terminal = Terminal(str(installed_env / "bin" / "duetto"), user_environment, cwd=tmp_path)

    def stored_reply() -> dict:
        shown = json.loads(run(installed_env, user_environment, "chats", "show", "1", "--json").stdout)
        assert [message["role"] for message in shown["messages"]] == ["user", "assistant"]
        return shown["messages"][1]

    try:
        terminal.start()
        terminal.wait_for(r"qwen2\.5-coder-1\.5b.*mode exact")
        terminal.keys("Write a Python function is_even(n) that returns True for even numbers. Only code.", "Enter")
        terminal.wait_for(r"1\.5b │ mode exact │ \d+\.\d tok/s")  # no "writing…" between: the reply is complete
        first = stored_reply()
        assert "def is_even" in first["content"]

        terminal.keys("M-y")  # Alt+Y: the last reply's code block
        terminal.wait_for(r"Copied the code block")
        assert "def is_even" in terminal.clipboard() and "```" not in terminal.clipboard()

        terminal.keys("C-r")  # write the reply again, in its place
        deadline = time.monotonic() + 180
        while stored_reply()["created_at"] == first["created_at"]:
            assert time.monotonic() < deadline, f"no new reply; the screen was:\n{terminal.screen()}"
            time.sleep(1)
        assert "def is_even" in stored_reply()["content"]

        picnic = tmp_path / "picnic.json"  # a second chat, written by another process, with no word of the search
        picnic.write_text(json.dumps({"title": "Plan a picnic", "messages": [
            {"role": "user", "content": "Plan a picnic for six."},
            {"role": "assistant", "content": "Pack bread, fruit, cheese and a blanket."}]}))  # fmt: skip
        assert run(installed_env, user_environment, "chats", "import", str(picnic)).returncode == 0
        terminal.wait_for(r"Plan a picnic", within=sidebar)  # the app lists what another process wrote

        def listed(screen: str) -> tuple[bool, bool]:
            return "Write a Python" in sidebar(screen), "Plan a picnic" in sidebar(screen)

        terminal.keys("C-f")
        terminal.type("zebra")
        terminal.wait_until(lambda screen: listed(screen) == (False, False), "a search for 'zebra' lists no chat")
        terminal.type(*["BSpace"] * 5, "return")  # in the reply and the question, not in the other chat
        terminal.wait_until(lambda screen: "return" in sidebar(screen) and listed(screen) == (True, False),
                            "a search for 'return' lists the is_even chat alone")  # fmt: skip

        terminal.keys("C-s")  # export the open chat to the current directory
        terminal.wait_for(r"Chat exported")
        exported = (tmp_path / "duetto-chat-1.md").read_text()
        assert exported.startswith("# Write a Python function is_even(n)") and "def is_even" in exported

        terminal.keys("C-q")
        assert terminal.wait_until_exited(), "Ctrl+Q quits"
        assert "Traceback" not in terminal.screen()
    finally:
        terminal.close()
    found = json.loads(run(installed_env, user_environment, "chats", "search", "is_even", "--json").stdout)
    assert found and found[0]["chat"] == 1


def sidebar(screen: str) -> str:
    return "\n".join(line[:32] for line in screen.splitlines())


def test_the_installed_duetto_asks_a_remote_target_on_llama_server(
    installed_env: Path, user_environment: dict[str, str], real_models: Path, tmp_path: Path
) -> None:
    """The installed tools build (or find) llama-server; the installed duetto registers it as a
    remote target and asks it, in a stored chat whose second turn comes from the server's cache,
    and serves it on to an openai client."""
    built = subprocess.run(
        [str(installed_env / "bin" / "python"), "-m", "duetto.app.bench.llama_tools", "llama-server"],
        capture_output=True, text=True, timeout=3600, check=True,
    )  # fmt: skip
    binary = built.stdout.split("\t")[1].strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "llama-server.log").open("w")
    server = subprocess.Popen(
        [binary, "-m", str(real_models / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"), "--host", "127.0.0.1",
         "--port", str(port), "-c", "4096", "--parallel", "1", "--no-webui"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            added = run(installed_env, user_environment, "models", "add-remote", "box", "--url", url, "--json")
            if added.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["check"]["same_tokens"] is True
        question = "Write a Python function that reverses a string."
        first = run(installed_env, user_environment, "ask", question, "--target", "box", "-c", "--max-tokens", "60",
                    "--json")  # fmt: skip
        second = run(installed_env, user_environment, "ask", "Now add type hints.", "--target", "box", "-c",
                     "--max-tokens", "60", "--json")  # fmt: skip
        with installed_server(installed_env, user_environment, tmp_path / "serve.log", "--target", "box") as served:
            client = openai.OpenAI(base_url=served.url, api_key="none")
            passed_on = client.chat.completions.create(
                model="box", messages=[{"role": "user", "content": QUESTION}], max_tokens=32
            )
        assert "5" in passed_on.choices[0].message.content, "duetto serve answers from the remote target"
        assert passed_on.model_extra["duetto"]["stats"]["drafter"] == "server"
        assert "Traceback" not in served.log()
    finally:
        server.kill()
        server.wait(timeout=30)
        log.close()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    answer = json.loads(second.stdout)
    assert "def " in json.loads(first.stdout)["text"] and answer["stats"]["drafter"] == "server"
    assert answer["stats"]["server_cached_tokens"] > 0, "the first turn came from the server's prompt cache"
