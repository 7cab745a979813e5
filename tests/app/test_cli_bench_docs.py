import json
from pathlib import Path

from duetto_cli import run_duetto
from sample_documents import write_document


def test_bench_docs_reports_accuracy_ttft_and_tokens_per_mode(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    write_document(tmp_path / "story.txt", 120)
    questions = [
        {"document": "story", "id": "story-needle-1", "kind": "needle", "question": "where is the cat?",
         "answers": ["mat"]},
        {"document": "story", "id": "story-ordinary-1", "kind": "ordinary", "question": "who slept?",
         "answers": ["dog"]},
    ]  # fmt: skip
    (tmp_path / "questions.jsonl").write_text("\n".join(json.dumps(entry) for entry in questions) + "\n")

    result = run_duetto(
        "bench-docs", "--docs", str(tmp_path), "--max-tokens", "4", "--threads", "1", "--json",
        "--target", str(tiny_models["target"]), "--reader", str(tiny_models["draft"]),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [entry["name"] for entry in report["documents"]] == ["story"]
    rows = report["results"]
    assert {(row["mode"], row["id"]) for row in rows} == {
        (mode, question["id"]) for mode in ("memory", "full") for question in questions
    }
    memory_first = next(row for row in rows if row["mode"] == "memory" and row["order"] == "first")
    full_first = next(row for row in rows if row["mode"] == "full" and row["order"] == "first")
    assert memory_first["citations"] and full_first["citations"] == []
    assert full_first["prompt_tokens"] > 3 * memory_first["prompt_tokens"]
    summary = report["summary"]["story"]
    assert {"accuracy_needle", "accuracy_ordinary", "ttft_first_seconds"} <= summary["memory"].keys()
    assert summary["ttft_speedup_first"] > 0


def test_a_docs_folder_without_its_questions_or_documents_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_questions = run_duetto("bench-docs", "--docs", str(empty))
    question = {"document": "gone", "id": "q1", "kind": "needle", "question": "where?", "answers": ["here"]}
    (tmp_path / "questions.jsonl").write_text(json.dumps(question) + "\n")
    no_document = run_duetto("bench-docs", "--docs", str(tmp_path))
    (tmp_path / "questions.jsonl").write_text("not json\n")
    bad_line = run_duetto("bench-docs", "--docs", str(tmp_path))

    assert no_questions.returncode == 2 and "has no questions.jsonl" in no_questions.stderr
    assert no_document.returncode == 2 and "names gone, with no gone.txt beside it" in no_document.stderr
    assert bad_line.returncode == 2 and "--docs" in bad_line.stderr and "line 1" in bad_line.stderr
    for result in (no_questions, no_document, bad_line):
        assert "Traceback" not in result.stderr
