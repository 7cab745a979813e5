"""The chat app open while `duetto docs add`, `duetto ask` and `duetto serve` write to the same
home (issue 20, item 2): no "database is locked" reaches anyone, no write is lost, and each sees
what the others wrote: the app shows the turn `ask` added to its open chat, `ask` answers with the
app's turns in its prompt, and the server answers from the document `docs add` read.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import openai
from chat_app import tiny_chat_app, wait_for
from duetto_cli import run_duetto
from duetto_server import live_server
from sample_documents import write_document

from duetto.app.tui.chat_view import ChatView
from duetto.app.tui.prompt_input import PromptInput
from duetto.engine.decoder import DecodeSettings
from duetto.store.conversations import list_messages
from duetto.store.database import open_database


async def say(pilot, app, text: str, replies: int) -> None:
    """Send ``text`` from the app's prompt box; wait until ``replies`` replies are shown and saved."""
    app.query_one(PromptInput).focus()
    app.query_one(PromptInput).text = text
    await pilot.press("enter")
    await wait_for(
        pilot,
        lambda: (
            not app.generating
            and sum(message.role == "assistant" for message in app.query_one(ChatView).messages()) == replies
        ),
        timeout=120,
    )


async def test_the_chat_app_ask_docs_add_and_serve_share_one_home(
    tmp_path: Path, tiny_models: dict[str, Path], isolated_duetto: Path
) -> None:
    database = isolated_duetto / "duetto.db"
    models = ("--target", str(tiny_models["target"]), "--threads", "1")
    document = write_document(tmp_path / "story.txt", 300)
    app = tiny_chat_app(tiny_models, database, DecodeSettings(max_tokens=12))
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.engine is not None, timeout=60)
        reading = subprocess.Popen(
            [sys.executable, "-m", "duetto.app", "docs", "add", str(document), "--model", str(tiny_models["draft"]),
             "--threads", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        await say(pilot, app, "the cat sat on the", replies=1)
        chat_id = app.conversation.id
        asked = await asyncio.to_thread(
            run_duetto, "ask", "and where did the dog sleep", "--chat", str(chat_id), *models, "--max-tokens", "8",
            "--json",
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        # the app shows the turn the shell added to its open chat, without being told
        await wait_for(pilot, lambda: len(app.query_one(ChatView).messages()) == 4, timeout=60)
        assert app.query_one(ChatView).messages()[2].text == "and where did the dog sleep"
        assert json.loads(asked.stdout)["stats"]["prompt_tokens"] > 20, "ask read the app's turns too"

        _, read_errors = await asyncio.to_thread(reading.communicate)
        assert reading.returncode == 0, read_errors
        serving = (*models, "--draft-model", str(tiny_models["draft"]), "--context", "1024")  # the reader docs add used
        with live_server(*serving, log_path=tmp_path / "serve.log") as server:
            client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
            question = asyncio.to_thread(
                client.chat.completions.create,
                model="duetto", max_tokens=8, messages=[{"role": "user", "content": "where did the dog sleep?"}],
                extra_body={"duetto": {"documents": ["story"]}},
            )  # fmt: skip
            server_answer, _ = await asyncio.gather(question, say(pilot, app, "then the dog sat", replies=3))
            assert server_answer.choices[0].message.content is not None
            log = server.log()
        assert "locked" not in log and "Traceback" not in log

    for errors in (asked.stderr, read_errors):
        assert "locked" not in errors
    db = open_database(database)
    roles = [message.role for message in list_messages(db, chat_id)]
    assert roles == ["user", "assistant"] * 3, "every turn of the app and of ask kept, in order"
    assert json.loads(run_duetto("docs", "list", "--json").stdout)[0]["complete"] is True
    assert db.execute("SELECT count(*) FROM chunk_states").fetchone()[0] > 0, "the server kept the states it read"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
