import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from duetto_cli import run_duetto
from sample_documents import write_document

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from test_plugin_lora import write_lora  # noqa: E402


def add(path: Path | str, tiny_models: dict[str, Path], *extra: str, **kwargs):
    return run_duetto(
        "docs", "add", str(path), "--model", str(tiny_models["draft"]), "--threads", "1", *extra, **kwargs
    )


def test_add_list_show_and_remove_a_document(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    document = write_document(tmp_path / "story.md", 60)

    added = add(document, tiny_models, "--json")
    assert added.returncode == 0, added.stderr
    summary = json.loads(added.stdout)
    assert summary["name"] == "story"
    assert summary["chunks"] >= 3 and 0 < summary["memory_tokens"] < summary["tokens"]
    assert set(summary) == {"name", "tokens", "chunks", "memory_tokens", "seconds"}

    listed = json.loads(run_duetto("docs", "list", "--json").stdout)
    assert [(entry["name"], entry["complete"]) for entry in listed] == [("story", True)]
    shown = json.loads(run_duetto("docs", "show", "story", "--json").stdout)
    assert len(shown["chunks"]) == summary["chunks"]
    assert " ".join(chunk["text"] for chunk in shown["chunks"]).split() == document.read_text().split()

    again = add(document, tiny_models, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["unchanged"] is True, "the same text: nothing to do"
    other = write_document(tmp_path / "other" / "story.md", 61) if (tmp_path / "other").mkdir() is None else None
    clash = add(other, tiny_models)
    assert clash.returncode == 1 and "already exists with other content" in clash.stderr

    database = Path(os.environ["DUETTO_HOME"]) / "duetto.db"
    size_with_document = database.stat().st_size
    removed = run_duetto("docs", "rm", "story")
    assert removed.returncode == 0
    assert database.stat().st_size < size_with_document  # the saved model states' pages are given back
    assert json.loads(run_duetto("docs", "list", "--json").stdout) == []
    missing = run_duetto("docs", "rm", "story")
    assert missing.returncode == 1 and "no document named 'story'" in missing.stderr


def test_without_a_terminal_docs_add_prints_progress_lines_and_show_cuts_previews_between_words(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    document = write_document(tmp_path / "story.md", 60)

    added = add(document, tiny_models)  # stderr is a pipe here, as in a script or a log

    lines = added.stderr.splitlines()
    assert added.returncode == 0 and lines and all(line.strip() for line in lines), "no blank lines"
    assert any(line.startswith("reading story: ") and line.endswith(" chunks") for line in lines), lines
    assert "1 chunks" not in added.stderr
    shown = run_duetto("docs", "show", "story").stdout.splitlines()
    words = set(document.read_text().split())
    for line in shown:
        last_word = line.rstrip("…").split()[-1]
        assert last_word in words, f"cut mid-word: {line[-30:]!r}"
    empty_name = add(document, tiny_models, "--name", "")
    assert empty_name.returncode == 1 and "invalid document name ''" in empty_name.stderr


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"   \n\n", "blank", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "image", "binary"),
        (b"caf\xe9 au lait", "latin1", "not UTF-8"),
        (b"fine text", "../escape", "invalid document name"),
        (b"fine text", "x'; DROP TABLE documents;--", "invalid document name"),
    ],
)
def test_bad_documents_get_one_line_errors_and_write_nothing(
    tmp_path: Path, tiny_models: dict[str, Path], isolated_duetto: Path, content: bytes, name: str, message: str
) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(content)

    result = add(source, tiny_models, "--name", name)

    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(run_duetto("docs", "list", "--json").stdout) == []
    assert {path.name for path in isolated_duetto.iterdir()} <= {"duetto.db", "duetto.db-wal", "duetto.db-shm"}


def test_a_huge_paste_is_refused_before_any_work(tiny_models: dict[str, Path]) -> None:
    result = add("-", tiny_models, "--name", "huge", input_text="word " * 2_100_000)

    assert result.returncode == 1 and "limited to 2 MB" in result.stderr


def test_an_ingest_killed_midway_completes_on_the_next_run(
    tmp_path: Path, tiny_models: dict[str, Path], isolated_duetto: Path
) -> None:
    document = write_document(tmp_path / "long.txt", 1500)
    command = [sys.executable, "-m", "duetto.app", "docs", "add", str(document), "--model", str(tiny_models["draft"])]
    process = subprocess.Popen([*command, "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = isolated_duetto / "duetto.db"
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        if database.exists():
            try:
                with sqlite3.connect(database) as connection:
                    stored = connection.execute("SELECT count(*) FROM chunks").fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
        if stored >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the ingest finished before it could be killed; make the document longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    listed = json.loads(run_duetto("docs", "list", "--json").stdout)
    assert listed[0]["complete"] is False
    resumed = add(document, tiny_models)
    assert resumed.returncode == 0, resumed.stderr
    assert "kept from an earlier run" in resumed.stderr

    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        positions = [row[0] for row in connection.execute("SELECT position FROM chunks ORDER BY position")]
    assert positions == list(range(len(positions)))
    shown = json.loads(run_duetto("docs", "show", "long", "--json").stdout)
    assert shown["complete"] is True
    assert " ".join(chunk["text"] for chunk in shown["chunks"]).split() == document.read_text().split()


def test_ask_about_a_document_cites_chunks_and_reuses_their_state(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    document = write_document(tmp_path / "story.txt", 90)
    assert add(document, tiny_models).returncode == 0
    models = ["--target", str(tiny_models["target"]), "--draft-model", str(tiny_models["draft"]), "--threads", "1"]

    def ask(question: str, *extra: str) -> dict:
        result = run_duetto("ask", "--doc", "story", question, *models, "--max-tokens", "6", "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    first = ask("where did the dog sleep?")
    second = ask("where did the dog sleep?")
    full = ask("where did the dog sleep?", "--full-context")

    assert first["citations"] and first["citations"] == second["citations"]
    assert first["stats"]["loaded_tokens"] == 0
    assert second["stats"]["loaded_tokens"] == first["stats"]["context_tokens"]
    assert second["stats"]["prompt_tokens"] < first["stats"]["prompt_tokens"] - first["stats"]["context_tokens"] / 2
    assert full["stats"]["prompt_tokens"] > first["stats"]["document_tokens"]
    assert first["stats"]["document_tokens"] > 3 * first["stats"]["context_tokens"]
    assert first["text"] == second["text"], "tiny models answer the same from loaded states"


def test_a_prepared_document_answers_every_question_from_saved_states(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    document = write_document(tmp_path / "story.txt", 90)
    added = add(document, tiny_models, "--json")
    assert added.returncode == 0, added.stderr
    chunks = json.loads(added.stdout)["chunks"]
    target = ["--target", str(tiny_models["target"]), "--threads", "1"]

    prepared = run_duetto("docs", "prepare", "story", *target, "--json")
    again = run_duetto("docs", "prepare", "story", *target, "--json")
    answer = run_duetto(
        "ask",
        "--doc",
        "story",
        "where did the dog sleep?",
        *target,
        "--draft-model",
        str(tiny_models["draft"]),
        "--max-tokens",
        "4",
        "--json",
    )

    assert prepared.returncode == 0, prepared.stderr
    report = json.loads(prepared.stdout)
    assert (report["chunks"], report["prepared_chunks"]) == (chunks, chunks)
    assert report["evaluated_tokens"] > 0 and report["state_bytes"] > 0
    assert json.loads(again.stdout)["prepared_chunks"] == 0, "a second run has nothing left to read"
    assert answer.returncode == 0, answer.stderr
    stats = json.loads(answer.stdout)["stats"]
    assert stats["loaded_tokens"] == stats["context_tokens"] > 0, "no chunk text read at question time"
    shown = json.loads(run_duetto("docs", "show", "story", "--json").stdout)
    assert shown["saved_state_bytes"] == report["state_bytes"]

    rerun = add(document, tiny_models, "--prepare", *target[:2], "--json")  # e.g. after an interrupted --prepare
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["prepare"]["prepared_chunks"] == 0


def test_a_lora_user_gets_states_read_with_their_adapter(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    """States read before a user imported a LoRA adapter do not serve them after: the adapter
    changes what the large model keeps."""
    target = ["--target", str(tiny_models["target"]), "--threads", "1"]
    run_duetto("users", "add", "lora-user")
    assert add(write_document(tmp_path / "story.txt", 60), tiny_models, "--user", "lora-user").returncode == 0

    def prepare(*user: str) -> int:
        result = run_duetto("docs", "prepare", "story", *target, *user, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["prepared_chunks"]

    chunks = prepare("--user", "lora-user")
    assert chunks > 0
    imported = run_duetto("plugin", "import", "--user", "lora-user", str(write_lora(tmp_path / "a.gguf")), *target)
    assert imported.returncode == 0, imported.stderr
    assert prepare("--user", "lora-user") == chunks, "the adapter changes the KV states: read again with it"
    assert prepare("--user", "lora-user") == 0
    others = run_duetto("docs", "prepare", "story", *target, "--json")
    assert others.returncode == 1 and "no document named 'story'" in others.stderr, "another user's document"
    unknown = run_duetto("docs", "prepare", "story", *target, "--user", "nobody")
    assert unknown.returncode == 1 and "no user named 'nobody'" in unknown.stderr


def test_preparing_a_missing_or_unfinished_document_is_a_one_line_error(tiny_models: dict[str, Path]) -> None:
    result = run_duetto("docs", "prepare", "nothing", "--target", str(tiny_models["target"]))

    assert result.returncode == 1 and "no document named 'nothing'" in result.stderr
    assert "Traceback" not in result.stderr


def test_ask_about_a_missing_document_is_a_one_line_error(tiny_models: dict[str, Path]) -> None:
    result = run_duetto("ask", "--doc", "nothing", "hi", "--target", str(tiny_models["target"]))

    assert result.returncode == 1 and "no document named 'nothing'" in result.stderr
    assert "Traceback" not in result.stderr


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page draws ``text`` (ASCII) with a standard font."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + content + b"\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return body


def test_a_pdf_is_read_as_its_text(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(minimal_pdf("The reading room opens at nine and the cat sat on the mat."))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n this is not really a pdf")

    added = add(pdf, tiny_models, "--json")
    refused = add(broken, tiny_models)

    assert added.returncode == 0, added.stderr
    shown = json.loads(run_duetto("docs", "show", "notice", "--json").stdout)
    assert "reading room opens at nine" in shown["chunks"][0]["text"]
    assert refused.returncode == 1 and "broken.pdf" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, f"one line, no library warning before it: {refused.stderr}"


def test_a_document_read_by_another_small_model_is_a_one_line_error(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    assert add(write_document(tmp_path / "story.txt", 30), tiny_models).returncode == 0

    # no draft model: the target reads the question, and its embeddings are not the draft's
    result = run_duetto("ask", "--doc", "story", "where is the dog", "--target", str(tiny_models["target"]),
                        "--threads", "1", "--max-tokens", "4")  # fmt: skip

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("read by a different small model; re-add them with this one")
