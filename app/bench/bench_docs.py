"""``duetto bench-docs``: long-document question answering, memory against full context.

For each document: ingest it (timed), then ask every question from memory, then from
the full text. Between the first memory question and the later ones the document is
prepared (the large model reads every chunk once and keeps the states, as `duetto docs
prepare` does), timed and reported; `--no-prepare` leaves states to be saved lazily.

The full-context baseline reads the whole document cold for the first
question, which is what `duetto ask --full-context` costs every time; its later
questions reuse the document's KV cache within the run, which does not change the
answers (same tokens) and keeps the run short. Memory-mode questions start from an empty
KV cache and reuse nothing but the states stored in SQLite, as a new process would.

Everything happens in a temporary database: the user's documents are not touched.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.app.cli.loading import load_decoder, load_reader, model_paths
from duetto.app.cli.options import reader_and_target_options
from duetto.app.core.documents import decode_document, ingest_document
from duetto.app.core.questions import ANSWER_SYSTEM_PROMPT, answer_from_documents, prepare_documents
from duetto.engine.decoder import DecodeSettings
from duetto.engine.remote_target import RemoteEndpoint
from duetto.store import documents as document_store
from duetto.store.database import open_database

BENCH_CONTEXT_LENGTH = 12288
"""Room for the 9k-token document in full, the question and the answer."""


@dataclass(frozen=True)
class Question:
    document: str
    id: str
    kind: str
    question: str
    answers: tuple[str, ...]

    def is_answered_by(self, text: str) -> bool:
        lowered = text.lower()
        return any(answer.lower() in lowered for answer in self.answers)


def read_questions(source: Traversable | Path) -> list[Question]:
    questions = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            questions.append(
                Question(entry["document"], entry["id"], entry["kind"], entry["question"], tuple(entry["answers"]))
            )
        except (ValueError, KeyError, TypeError) as error:
            raise click.BadParameter(
                f'line {number}: expected {{"document","id","kind","question","answers"}} ({error})',
                param_hint="--docs",
            ) from error
    return questions


@click.command("bench-docs")
@click.option(
    "--docs",
    "docs_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of NAME.txt documents with a questions.jsonl (default: the built-in set).",
)
@click.option("--only", default=None, metavar="NAME", help="Run only this document.")
@click.option("--modes", default="memory,full", show_default=True, help="memory, full or both, comma-separated.")
@click.option("--max-tokens", type=click.IntRange(1, 512), default=24, show_default=True)
@click.option(
    "--prepare/--no-prepare",
    default=True,
    show_default=True,
    help="After the first memory question, prepare the document (`duetto docs prepare`) before the later ones.",
)
@reader_and_target_options
@click.option("--json", "as_json", is_flag=True, help='Print {"documents", "results", "summary"} on stdout.')
def bench_docs(
    docs_dir: Path | None,
    only: str | None,
    modes: str,
    max_tokens: int,
    prepare: bool,
    profile: str | None,
    target: str | None,
    reader: str | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """Accuracy, time to first token and tokens read: document memory against full context.

    Planted facts (needles) and ordinary questions about the prose; an answer counts when it
    contains one of the accepted answers.
    """
    chosen_modes = [mode.strip() for mode in modes.split(",") if mode.strip()]
    if not chosen_modes or not set(chosen_modes) <= {"memory", "full"}:
        raise click.BadParameter("use memory, full or memory,full", param_hint="--modes")
    source: Traversable | Path = docs_dir if docs_dir else resources.files("duetto.app.bench").joinpath("documents")
    if not (source / "questions.jsonl").is_file():
        raise click.BadParameter(f"{docs_dir} has no questions.jsonl (see --help)", param_hint="--docs")
    questions = read_questions(source / "questions.jsonl")
    names = list(dict.fromkeys(question.document for question in questions))
    if missing := [name for name in names if not (source / f"{name}.txt").is_file()]:
        raise click.BadParameter(f"questions.jsonl names {', '.join(missing)}, with no {missing[0]}.txt beside it",
                                 param_hint="--docs")  # fmt: skip
    if only:
        if only not in names:
            raise click.BadParameter(f"no questions for {only!r}; documents: {', '.join(names)}", param_hint="--only")
        names = [only]

    target_path, small_model = model_paths(profile, target, None, False)
    remote = isinstance(target_path, RemoteEndpoint)  # its small model writes the prompts; nothing to prepare
    document_reader, reader_model = load_reader(profile, reader, threads=threads)
    decoder = load_decoder(
        target_path, small_model if remote else None, context_length=BENCH_CONTEXT_LENGTH, threads=threads
    )
    prepare = prepare and not remote
    settings = DecodeSettings(mode="exact", drafter="lookup", max_tokens=max_tokens)
    documents_report: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="duetto-bench-docs-") as scratch:
        db = open_database(Path(scratch) / "bench.db")
        for name in names:
            text = decode_document((source / f"{name}.txt").read_bytes(), f"{name}.txt")
            with stderr_console.status(f"reading {name}"):
                ingest = ingest_document(db, document_reader, reader_model, name, text)
            documents_report.append(ingest.as_json())
            stderr_console.print(
                f"{name}: {ingest.tokens} tokens read in {ingest.seconds:.1f} s, {ingest.chunks} chunks, "
                f"memory {ingest.memory_tokens} tokens"
            )
            document = document_store.get_document(db, name)
            for mode in chosen_modes:
                decoder.target.truncate(0)
                for order, question in enumerate(q for q in questions if q.document == name):
                    if mode == "memory":
                        decoder.target.truncate(0)  # as in a new process: not even the instructions are kept
                    with stderr_console.status(f"{name} {mode}: {question.id}"):
                        answer = answer_from_documents(
                            db,
                            decoder,
                            document_reader,
                            reader_model,
                            [document],
                            question.question,
                            settings,
                            full_context=mode == "full",
                            reuse_full_context=order > 0,
                        )
                    results.append(
                        {
                            "document": name,
                            "id": question.id,
                            "kind": question.kind,
                            "mode": mode,
                            "order": "first" if order == 0 else "later",
                            "correct": question.is_answered_by(answer.text),
                            "answer": answer.text.strip(),
                            "ttft_seconds": answer.stats["ttft_seconds"],
                            "prompt_tokens": answer.stats["prompt_tokens"],
                            "context_tokens": answer.stats["context_tokens"],
                            "citations": [citation.label for citation in answer.citations],
                        }
                    )
                    stderr_console.print(
                        f"  {mode:6} {question.id:24} {'ok ' if results[-1]['correct'] else 'MISS'} "
                        f"ttft {answer.stats['ttft_seconds']:6.2f} s  read {answer.stats['prompt_tokens']:5} "
                        f"tokens  {answer.text.strip()[:60]!r}"
                    )
                    if mode == "memory" and order == 0 and prepare:
                        with stderr_console.status(f"preparing {name}"):
                            prepared = prepare_documents(db, decoder.target, [document])
                        documents_report[-1]["prepare"] = prepared.as_json()
                        stderr_console.print(
                            f"  prepared: {prepared.evaluated_tokens} tokens read by the large model in "
                            f"{prepared.seconds:.1f} s, {prepared.state_bytes / 1e6:.1f} MB of saved state"
                        )
    summary = summarize(results, documents_report)
    if as_json:
        print_json(
            {"documents": documents_report, "results": results, "summary": summary, "system": ANSWER_SYSTEM_PROMPT}
        )
    else:
        print_table(summary)


def summarize(results: list[dict[str, Any]], documents: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"ingest_seconds": {entry["name"]: entry["seconds"] for entry in documents}}
    summary["prepare_seconds"] = {
        entry["name"]: entry["prepare"]["seconds"] for entry in documents if "prepare" in entry
    }
    for document in {result["document"] for result in results}:
        per_document: dict[str, Any] = {}
        for mode in ("memory", "full"):
            rows = [r for r in results if r["document"] == document and r["mode"] == mode]
            if not rows:
                continue
            per_mode: dict[str, Any] = {}
            for kind in ("needle", "ordinary"):
                kind_rows = [r for r in rows if r["kind"] == kind]
                if kind_rows:
                    per_mode[f"accuracy_{kind}"] = round(sum(r["correct"] for r in kind_rows) / len(kind_rows), 3)
            first = [r["ttft_seconds"] for r in rows if r["order"] == "first"]
            later = [r["ttft_seconds"] for r in rows if r["order"] == "later"]
            per_mode["ttft_first_seconds"] = first[0] if first else None
            per_mode["ttft_later_median_seconds"] = round(statistics.median(later), 3) if later else None
            per_mode["prompt_tokens_first"] = next((r["prompt_tokens"] for r in rows if r["order"] == "first"), None)
            per_mode["prompt_tokens_later_median"] = (
                statistics.median(r["prompt_tokens"] for r in rows if r["order"] == "later") if later else None
            )
            per_document[mode] = per_mode
        if "memory" in per_document and "full" in per_document:
            cold = per_document["full"]["ttft_first_seconds"]
            memory = per_document["memory"]
            per_document["ttft_speedup_first"] = round(cold / memory["ttft_first_seconds"], 2)
            if memory["ttft_later_median_seconds"]:
                per_document["ttft_speedup_later"] = round(cold / memory["ttft_later_median_seconds"], 2)
        summary[document] = per_document
    return summary


def print_table(summary: dict[str, Any]) -> None:
    table = Table("document", "mode", "needles", "ordinary", "ttft first", "ttft later", "read first", "read later")
    for document, per_document in summary.items():
        if document in ("ingest_seconds", "prepare_seconds"):
            continue
        for mode in ("memory", "full"):
            row = per_document.get(mode)
            if not row:
                continue
            table.add_row(
                document,
                mode,
                f"{row.get('accuracy_needle', 0):.0%}",
                f"{row.get('accuracy_ordinary', 0):.0%}",
                f"{row['ttft_first_seconds']:.2f} s",
                f"{row['ttft_later_median_seconds']:.2f} s" if row["ttft_later_median_seconds"] else "-",
                str(row["prompt_tokens_first"]),
                str(row["prompt_tokens_later_median"] or "-"),
            )
    stdout_console.print(table)
    for document, per_document in summary.items():
        if document not in ("ingest_seconds", "prepare_seconds") and "ttft_speedup_first" in per_document:
            stdout_console.print(
                f"{document}: time to first token {per_document['ttft_speedup_first']}x lower on the first question, "
                f"{per_document.get('ttft_speedup_later', '-')}x on later ones; ingest "
                f"{summary['ingest_seconds'][document]:.1f} s"
                + (
                    f", preparing {summary['prepare_seconds'][document]:.1f} s"
                    if document in summary["prepare_seconds"]
                    else ""
                )
            )
