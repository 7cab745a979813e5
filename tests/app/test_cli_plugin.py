"""duetto plugin train/eval/import/rm and ask --user, on the tiny target model."""

import dataclasses
import json
import stat
import sys
from pathlib import Path

import pytest
from duetto_cli import run_duetto

from duetto.app.core.chat import StoredChat
from duetto.app.core.models import load_engine
from duetto.app.core.plugins import chat_reading_keeper, document_reading_keeper
from duetto.app.core.questions import FULL_TEXT_CHUNKS
from duetto.engine.decoder import DecodeSettings
from duetto.store import documents as document_store
from duetto.store.conversations import add_message, create_conversation, get_user, list_messages
from duetto.store.database import open_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from test_plugin_lora import write_lora  # noqa: E402

USER_TEXT = "the cat sat on the warm mat and the dog slept near the door. " * 40
OTHER_TEXT = "Hello world! How are you today? I am fine, thank you. " * 8


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "alice.txt"
    path.write_text(USER_TEXT)
    return path


def target_options(tiny_models: dict[str, Path]) -> tuple[str, ...]:
    return ("--target", str(tiny_models["target"]), "--threads", "1")


def evaluate(user: str, text: Path, tiny_models: dict[str, Path]) -> dict:
    result = run_duetto("plugin", "eval", "--user", user, "--text", str(text), "--json", *target_options(tiny_models))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ask(user: str, tiny_models: dict[str, Path]) -> str:
    result = run_duetto(
        "ask", "the cat sat on the", "--user", user, "--mode", "target", "--max-tokens", "12", "--json",
        *target_options(tiny_models),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["text"]


def test_train_eval_ask_and_remove_a_users_plugin(
    tiny_models: dict[str, Path], text_file: Path, isolated_duetto: Path
) -> None:
    run_duetto("users", "add", "alice")
    run_duetto("users", "add", "bob")

    trained = run_duetto(
        "plugin", "train", "--user", "alice", "--text", str(text_file), "--json", *target_options(tiny_models)
    )

    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["held_out_perplexity_plugin"] < report["held_out_perplexity_base"]
    weights = Path(report["path"])
    assert weights.parent == isolated_duetto / "users" / "alice"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o600 and stat.S_IMODE(weights.parent.stat().st_mode) == 0o700
    assert report["bytes"] < 10_000_000

    alice = evaluate("alice", text_file, tiny_models)
    bob = evaluate("bob", text_file, tiny_models)
    assert alice["perplexity_plugin"] < alice["perplexity_base"] and alice["tokens"] > 100
    assert bob["perplexity_plugin"] == bob["perplexity_base"], "bob has no plugin"
    # alice's base is read beside her plugin's hidden states, bob's plainly: equal to float rounding
    assert bob["perplexity_base"] == pytest.approx(alice["perplexity_base"], rel=1e-6)

    assert ask("alice", tiny_models) != ask("bob", tiny_models) == ask("default", tiny_models)

    assert run_duetto("plugin", "rm", "--user", "alice").returncode == 0
    assert not weights.exists()
    again = evaluate("alice", text_file, tiny_models)
    assert again["perplexity_plugin"] == again["perplexity_base"]


def test_removing_a_user_removes_their_plugin(tiny_models: dict[str, Path], text_file: Path) -> None:
    run_duetto("users", "add", "carol")
    trained = run_duetto(
        "plugin", "train", "--user", "carol", "--text", str(text_file), "--epochs", "2", "--json",
        *target_options(tiny_models),
    )  # fmt: skip
    weights = Path(json.loads(trained.stdout)["path"])

    assert run_duetto("users", "rm", "carol").returncode == 0
    assert not weights.exists() and not weights.parent.exists()


def test_train_on_what_the_user_typed_in_their_chats(
    tiny_models: dict[str, Path], isolated_duetto: Path, tmp_path: Path
) -> None:
    run_duetto("users", "add", "erin")
    run_duetto("users", "add", "frank")
    db = open_database()
    erin, frank = get_user(db, "erin"), get_user(db, "frank")
    for user, text in ((erin, USER_TEXT), (frank, OTHER_TEXT)):
        conversation = create_conversation(db, user, "notes")
        for line in text.split(". ")[:-1]:
            add_message(db, conversation.id, "user", line)
            add_message(db, conversation.id, "assistant", "Noted: the assistant's words are not the user's.")

    trained = run_duetto("plugin", "train", "--user", "erin", "--chats", "--json", *target_options(tiny_models))

    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["sources"] == {
        "files": [], "chat_messages": 40, "chat_messages_read_as_typed": 0, "documents": [], "document_chunks": 0,
        "document_chunks_read_for_questions": 0, "document_chunks_read_now_for_questions_too": 0,
        "files_already_learnt": [],
    }  # fmt: skip
    assert report["held_out_perplexity_plugin"] < report["held_out_perplexity_base"]
    # only erin's own words were read, not the replies nor frank's chats
    same_words = tmp_path / "erin.txt"
    same_words.write_text("\n\n".join(USER_TEXT.split(". ")[:-1]))
    from_file = run_duetto(
        "plugin", "train", "--user", "erin", "--text", str(same_words), "--fresh", "--json",
        *target_options(tiny_models),
    )  # fmt: skip
    assert json.loads(from_file.stdout)["tokens"] == report["tokens"]

    nobody_typed = run_duetto("plugin", "train", "--user", "default", "--chats", *target_options(tiny_models))
    assert nobody_typed.returncode == 1 and "has typed nothing" in nobody_typed.stderr
    nothing = run_duetto("plugin", "train", "--user", "erin", *target_options(tiny_models))
    assert nothing.returncode == 1 and "nothing to learn from" in nothing.stderr


def test_training_again_reads_only_what_is_new(
    tiny_models: dict[str, Path], isolated_duetto: Path, tmp_path: Path
) -> None:
    run_duetto("users", "add", "gail")
    db = open_database()
    conversation = create_conversation(db, get_user(db, "gail"), "notes")
    for line in USER_TEXT.split(". ")[:-1]:
        add_message(db, conversation.id, "user", line)
    notes = tmp_path / "notes.txt"
    notes.write_text(USER_TEXT)

    def train(*arguments: str) -> dict:
        result = run_duetto(
            "plugin", "train", "--user", "gail", *arguments, "--json", *target_options(tiny_models)
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    first = train("--chats", "--text", str(notes))
    assert not first["continued"] and first["sources"]["chat_messages"] == 40

    assert train("--chats", "--text", str(notes))["up_to_date"]  # nothing typed or written since

    for line in OTHER_TEXT.split(". ")[:-1] * 6:
        add_message(db, conversation.id, "user", line)
    second = train("--chats", "--text", str(notes))
    assert second["continued"]
    assert second["sources"] == {
        "files": [], "chat_messages": 48, "chat_messages_read_as_typed": 0, "documents": [], "document_chunks": 0,
        "document_chunks_read_for_questions": 0, "document_chunks_read_now_for_questions_too": 0,
        "files_already_learnt": [str(notes)],
    }  # fmt: skip
    assert second["vocabulary_size"] == first["vocabulary_size"]  # the plugin's own vocabulary, kept

    too_little = run_duetto("plugin", "train", "--user", "gail", "--text", str(tmp_path / "short.txt"))
    assert too_little.returncode == 1
    (tmp_path / "short.txt").write_text("a few new words")
    too_little = run_duetto(
        "plugin", "train", "--user", "gail", "--text", str(tmp_path / "short.txt"), *target_options(tiny_models)
    )  # fmt: skip
    assert too_little.returncode == 1 and "--fresh" in too_little.stderr
    assert len(too_little.stderr.strip().splitlines()) == 1


def test_chat_messages_are_read_once_as_they_are_typed(
    tiny_models: dict[str, Path], isolated_duetto: Path, tmp_path: Path
) -> None:
    """Once a plugin has learnt from its user's chats, each message they type is read by the target
    once, as the chat reads it, and the next training reads none of it again; before that (and for
    anyone else's plugin) a chat keeps nothing."""
    db = open_database()
    notes = tmp_path / "notes.txt"
    notes.write_text(USER_TEXT)
    # hana learns from her chats, jade will from hers (none yet), ivan from a file only
    for name, sources in (
        ("hana", ["--chats"]),
        ("ivan", ["--text", str(notes)]),
        ("jade", ["--text", str(notes), "--chats"]),
    ):
        run_duetto("users", "add", name)
        if name != "jade":
            conversation = create_conversation(db, get_user(db, name), "notes")
            for line in USER_TEXT.split(". ")[:-1]:
                add_message(db, conversation.id, "user", line)
        trained = run_duetto("plugin", "train", "--user", name, *sources, *target_options(tiny_models))
        assert trained.returncode == 0, trained.stderr
    settings = DecodeSettings(max_tokens=8)

    def chat_as(name: str, count: int) -> list[int]:
        engine = load_engine(tiny_models["target"], None, context_length=512, threads=1, user=name)
        try:
            asked = []
            for number in range(count):  # one chat each: the 512-token context holds one such turn
                conversation = create_conversation(db, get_user(db, name), f"chat {number}")
                StoredChat(engine, conversation.id).ask(f"{number}: {OTHER_TEXT}", settings)
                asked.append(list_messages(db, conversation.id)[0].id)
            return asked
        finally:
            engine.close()

    asked = chat_as("hana", 3)
    chat_as("ivan", 1)
    jade_asked = chat_as("jade", 1)
    assert [
        int(path.stem) for path in (isolated_duetto / "users" / "jade" / "chat-readings").glob("*.npz")
    ] == jade_asked

    readings = isolated_duetto / "users" / "hana" / "chat-readings"
    assert sorted(int(path.stem) for path in readings.glob("*.npz")) == asked
    assert stat.S_IMODE(readings.stat().st_mode) == 0o700
    assert not (isolated_duetto / "users" / "ivan" / "chat-readings").exists()
    again = run_duetto("plugin", "train", "--user", "hana", "--chats", "--json", *target_options(tiny_models))
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["continued"] and report["sources"]["chat_messages"] == 3
    assert report["sources"]["chat_messages_read_as_typed"] == 3
    assert list(readings.glob("*.npz")) == []  # learnt from: not kept any longer

    engine = load_engine(tiny_models["target"], None, context_length=512, threads=1, user="hana")
    target = engine.decoder.target
    assert chat_reading_keeper(target, "hana", asked[-1], "learnt from already") is None  # a regenerate, say
    assert chat_reading_keeper(target, "ivan", asked[-1] + 100, "not hana's chat") is None
    assert chat_reading_keeper(target, "hana", asked[-1] + 100, "typed since") is not None
    engine.close()
    chat_as("hana", 1)
    chat_as("hana", 1)
    assert len(list(readings.glob("*.npz"))) == 2
    newest = max(int(path.stem) for path in readings.glob("*.npz"))
    chat_id = db.execute("SELECT conversation_id FROM messages WHERE id = ?", [newest]).fetchone()[0]
    assert run_duetto("chats", "rm", str(chat_id), "--user", "hana").returncode == 0
    assert [int(path.stem) for path in readings.glob("*.npz")] != [newest], "its reading went with the chat"
    assert len(list(readings.glob("*.npz"))) == 1
    fresh = run_duetto(
        "plugin", "train", "--user", "hana", "--text", str(notes), "--fresh", *target_options(tiny_models)
    )
    assert fresh.returncode == 0, fresh.stderr
    assert not readings.exists()  # the new plugin does not learn from chats: nothing is kept for it


def test_documents_are_learnt_from_and_read_once_for_questions(
    tiny_models: dict[str, Path], isolated_duetto: Path, tmp_path: Path
) -> None:
    """A plugin learns from its user's documents (not another user's); once it has, each chunk the
    target reads for questions (docs prepare) has its reading kept, and the next training reads
    none of it again. The first training reads the chunks as questions do and keeps their states,
    so the target reads a document once for both. (Document names are the machine's, hence the
    users' names in them.)"""
    target = target_options(tiny_models)
    small = ("--model", str(tiny_models["draft"]), "--threads", "1")
    diary = "".join(f"Day {day}: {sentence}. " for day, sentence in enumerate(USER_TEXT.split(". ")[:-1]))
    chunks_added = {}
    for name, text in (("kim", diary), ("lee", OTHER_TEXT * 8)):
        run_duetto("users", "add", name)
        (tmp_path / f"{name}.txt").write_text(text)
        added = run_duetto(
            "docs", "add", str(tmp_path / f"{name}.txt"), "--name", f"{name}-notes", "--user", name, "--json", *small
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        chunks_added[name] = json.loads(added.stdout)["chunks"]

    def train(*arguments: str) -> dict:
        result = run_duetto("plugin", "train", "--user", "kim", *arguments, "--json", *target)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def learnt_by_plugin(user: str) -> dict:
        listed = run_duetto("docs", "list", "--user", user, "--json")
        return {entry["name"]: entry["chunks_learnt_by_plugin"] for entry in json.loads(listed.stdout)}

    assert learnt_by_plugin("kim") == {"kim-notes": None}, "no plugin that learns from documents yet"
    first = train("--docs")
    assert (
        first["sources"]["documents"] == ["kim-notes"]
        and first["sources"]["document_chunks"] == chunks_added["kim"] > 1
    )
    assert learnt_by_plugin("kim") == {"kim-notes": chunks_added["kim"]}
    assert learnt_by_plugin("lee") == {"lee-notes": None}
    assert first["sources"]["document_chunks_read_for_questions"] == 0
    assert first["sources"]["document_chunks_read_now_for_questions_too"] == chunks_added["kim"]
    shown = json.loads(run_duetto("docs", "show", "kim-notes", "--user", "kim", "--json").stdout)
    assert shown["saved_state_bytes"] > 0, "read whole as questions read it, its states kept for them"
    question = ("where did the dog sleep?", "--user", "kim", "--draft-model", str(tiny_models["draft"]))
    asked = run_duetto("ask", "--doc", "kim-notes", *question, "--max-tokens", "4", "--json", *target)
    assert json.loads(asked.stdout)["stats"]["loaded_tokens"] > 0, "the training's states serve questions"
    assert first["held_out_perplexity_plugin"] < first["held_out_perplexity_base"]
    assert train("--docs")["up_to_date"]

    (tmp_path / "more.txt").write_text(diary.replace("cat", "fox").replace("Day", "Night"))
    added = run_duetto("docs", "add", str(tmp_path / "more.txt"), "--user", "kim", "--json", *small)
    chunks = json.loads(added.stdout)["chunks"]
    assert learnt_by_plugin("kim") == {"kim-notes": chunks_added["kim"], "more": 0}
    shown = run_duetto("docs", "show", "more", "--user", "kim")
    assert f"learnt by kim's plugin: 0 of {chunks} chunks" in shown.stderr
    assert "plugin train --user kim --docs" in shown.stderr
    listed = run_duetto("docs", "list", "--user", "kim", env={"COLUMNS": "200"})
    assert "learnt by plugin" in listed.stdout and f"0 of {chunks} chunks" in listed.stdout
    for name, document in (("kim", "kim-notes"), ("kim", "more"), ("lee", "lee-notes")):
        prepared = run_duetto("docs", "prepare", document, "--user", name, *target)
        assert prepared.returncode == 0, prepared.stderr
    readings = isolated_duetto / "users" / "kim" / "document-readings"
    assert len(list(readings.glob("*.npz"))) == chunks, "the new document's chunks, read whole, once each"
    assert not (isolated_duetto / "users" / "lee" / "document-readings").exists(), "lee's plugin asked for nothing"

    second = train("--docs")
    assert second["continued"] and second["sources"]["documents"] == ["more"]
    assert second["sources"]["document_chunks"] == second["sources"]["document_chunks_read_for_questions"] == chunks
    assert list(readings.glob("*.npz")) == [], "learnt from: not kept any longer"

    (tmp_path / "third.txt").write_text(diary.replace("dog", "owl"))
    assert run_duetto("docs", "add", str(tmp_path / "third.txt"), "--user", "kim", *small).returncode == 0
    asked = run_duetto(
        "ask", "--doc", "third", "where did the owl sleep?", "--user", "kim", "--draft-model",
        str(tiny_models["draft"]), "--max-tokens", "4", "--json", *target,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert 1 <= len(list(readings.glob("*.npz"))) <= FULL_TEXT_CHUNKS, "a question keeps the chunks it read whole"
    assert run_duetto("docs", "rm", "third", "--user", "kim").returncode == 0
    assert list(readings.glob("*.npz")) == [], "a removed document's readings go with it"

    db = open_database()
    chunk = document_store.list_chunks(db, [document_store.find_document(db, "more").id])[0]
    whole = {"7:full": dataclasses.replace(chunk, text="a chunk kim's plugin has not learnt")}
    documents = document_store.list_documents(db, get_user(db, "kim"))
    engine = load_engine(tiny_models["target"], None, context_length=512, threads=1, user="kim")
    assert document_reading_keeper(db, engine.decoder.target, documents, whole) is not None
    assert document_reading_keeper(db, engine.decoder.target.plain, documents, whole) is None, "no plugin: none"
    engine.close()
    lee = load_engine(tiny_models["target"], None, context_length=512, threads=1, user="lee")
    assert document_reading_keeper(db, lee.decoder.target, documents, whole) is None, "not lee's document"
    lee.close()

    # a first training that reads the chunks and then fails (too little text) keeps what it read
    run_duetto("users", "add", "max")
    (tmp_path / "max.txt").write_text(diary[:300])
    assert run_duetto("docs", "add", str(tmp_path / "max.txt"), "--user", "max", *small).returncode == 0
    short = run_duetto("plugin", "train", "--user", "max", "--docs", *target)
    assert short.returncode == 1 and "a plugin needs at least" in short.stderr
    kept = list((isolated_duetto / "users" / "max" / "document-readings").glob("*.npz"))
    assert kept
    (tmp_path / "max-more.txt").write_text(diary.replace("mat", "rug"))
    assert run_duetto("docs", "add", str(tmp_path / "max-more.txt"), "--user", "max", *small).returncode == 0
    result = run_duetto("plugin", "train", "--user", "max", "--docs", "--json", *target)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sources"]["document_chunks_read_for_questions"] == len(kept)
    nothing = run_duetto("plugin", "train", "--user", "default", "--docs", *target)
    assert nothing.returncode == 1 and "has added no documents" in nothing.stderr


def test_the_generic_text_is_read_once_per_model(
    tiny_models: dict[str, Path], isolated_duetto: Path, text_file: Path
) -> None:
    def train() -> dict:
        result = run_duetto(
            "plugin", "train", "--user", "default", "--text", str(text_file), "--fresh", "--json",
            *target_options(tiny_models),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    first = train()
    [kept] = (isolated_duetto / "generic-readings").glob("*.npz")
    written = kept.stat().st_mtime_ns

    again = train()
    assert kept.stat().st_mtime_ns == written  # not read again
    assert again["held_out_perplexity_plugin"] == first["held_out_perplexity_plugin"]

    kept.write_bytes(b"damaged")
    assert train()["held_out_perplexity_plugin"] == first["held_out_perplexity_plugin"]  # read again
    assert kept.stat().st_size > 1000


def test_bad_input_is_a_one_line_error(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    run_duetto("users", "add", "dave")
    empty, binary, short = tmp_path / "empty.txt", tmp_path / "blob.bin", tmp_path / "short.txt"
    empty.write_text("  \n")
    binary.write_bytes(b"\x00\x01\x02text")
    short.write_text("just a few words")
    cases = [
        (("--user", "dave", "--text", str(tmp_path / "missing.txt")), "no such file"),
        (("--user", "dave", "--text", str(empty)), "is empty"),
        (("--user", "dave", "--text", str(binary)), "is binary"),
        (("--user", "nobody", "--text", str(short)), "no user named 'nobody'"),
        (("--user", "dave", "--text", str(short)), "a plugin needs at least"),
    ]
    for arguments, message in cases:
        result = run_duetto("plugin", "train", *arguments, *target_options(tiny_models))
        assert result.returncode == 1, (arguments, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_import_a_lora_adapter(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    run_duetto("users", "add", "erin")
    text = tmp_path / "other.txt"
    text.write_text(OTHER_TEXT)
    adapter = write_lora(tmp_path / "erin-lora.gguf", scale=2.0)

    imported = run_duetto("plugin", "import", "--user", "erin", str(adapter), *target_options(tiny_models))

    assert imported.returncode == 0, imported.stderr
    listed = json.loads(run_duetto("users", "list", "--json").stdout)["users"]
    assert {"name": "erin", "plugin": "lora", "plugin_bytes": adapter.stat().st_size} in listed
    scores = evaluate("erin", text, tiny_models)
    assert scores["perplexity_plugin"] != scores["perplexity_base"]


def test_a_lora_for_another_model_is_not_imported(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    run_duetto("users", "add", "frank")
    adapter = write_lora(tmp_path / "narrow.gguf", width=64)

    result = run_duetto("plugin", "import", "--user", "frank", str(adapter), *target_options(tiny_models))

    assert result.returncode == 1 and "cannot apply the LoRA adapter" in result.stderr
    assert json.loads(run_duetto("users", "list", "--json").stdout)["users"][1]["plugin"] is None


def test_a_running_engine_takes_up_the_plugin_as_it_is_on_disk(tiny_models: dict[str, Path]) -> None:
    """The chat app and the server keep one engine for hours: a plugin trained (here: its file
    written), damaged or removed meanwhile applies from their next reply on, without a reload."""
    import numpy as np

    from duetto.app.core.models import user_plugin_dir
    from duetto.engine.plugin import SidePlugin, TargetFingerprint
    from duetto.engine.plugin_files import SIDE_PLUGIN_FILE, remove_plugin, save_side_plugin

    assert run_duetto("users", "add", "ida").returncode == 0
    engine = load_engine(tiny_models["target"], None, context_length=512, threads=1, user="ida")
    session = engine.decoder.target
    prompt = session.tokenize("the cat sat on the", add_bos=True)

    def first_token() -> int:
        return engine.decoder.reply(prompt, DecodeSettings(mode="exact", max_tokens=1)).token_ids[0]

    plain = first_token()
    assert engine.refresh_plugin() is None, "nothing changed"
    forced = (plain + 7) % session.vocabulary_size
    directory = user_plugin_dir("ida")
    fingerprint = TargetFingerprint(session.path.name, session.vocabulary_size, session.hidden_size)
    zeros = np.zeros((session.hidden_size, 1), np.float32)
    bias = np.array([100.0], np.float32)
    save_side_plugin(directory, SidePlugin(np.array([forced]), zeros, np.zeros((1, 1), np.float32), bias, 1.0,
                                           fingerprint))  # fmt: skip

    assert "answering with the new one" in engine.refresh_plugin()
    assert engine.decoder.target.tokens[: len(prompt) - 1] == prompt[:-1], "a side plugin keeps the KV cache"
    assert first_token() == forced
    assert engine.refresh_plugin() is None, "taken up once"
    (directory / SIDE_PLUGIN_FILE).write_bytes(b"not a plugin")
    assert "cannot be used" in engine.refresh_plugin()
    assert first_token() == plain
    remove_plugin(directory)
    assert "removed" in engine.refresh_plugin()
    assert first_token() == plain
    engine.close()


def test_a_lora_imported_under_a_running_engine_gets_its_own_state_identity(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Saved document states are kept under the target's identity, adapter included: an adapter
    imported under the same file name while the engine runs must not reuse the old one's states."""
    from duetto.app.core.fingerprints import target_fingerprint

    assert run_duetto("users", "add", "jon").returncode == 0
    first, second = write_lora(tmp_path / "a.gguf", scale=1.0), write_lora(tmp_path / "b.gguf", scale=3.0)
    assert run_duetto("plugin", "import", "--user", "jon", str(first), *target_options(tiny_models)).returncode == 0
    engine = load_engine(tiny_models["target"], None, context_length=512, threads=1, user="jon")
    before = target_fingerprint(engine.decoder.target)

    assert run_duetto("plugin", "import", "--user", "jon", str(second), *target_options(tiny_models)).returncode == 0
    assert "answering with the new one" in engine.refresh_plugin()
    assert target_fingerprint(engine.decoder.target) != before
    engine.close()


@pytest.mark.parametrize("kind", ["model", "text"])
def test_a_file_that_is_no_adapter_is_refused_from_its_header(
    tiny_models: dict[str, Path], tmp_path: Path, kind
) -> None:
    """Refused before the target loads: the target named here does not exist, and the error is
    the file's, not the target's."""
    run_duetto("users", "add", "gil")
    if kind == "model":
        wrong, said = tiny_models["draft"], "not a LoRA adapter (general.type is not 'adapter')"
    else:
        wrong, said = tmp_path / "notes.gguf", "not a valid GGUF model"
        wrong.write_text("these are notes, not weights\n" * 10)

    result = run_duetto("plugin", "import", "--user", "gil", str(wrong), "--target", str(tmp_path / "absent.gguf"))

    assert result.returncode == 1 and said in result.stderr and result.stderr.count("\n") == 1, result.stderr
