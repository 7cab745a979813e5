"""``duetto bench-chat``: a scripted long chat, time to first token and memory per turn.

The script cycles through the built-in bench prompts (code to edit, notices to quote,
open questions), so the conversation grows by real-sized turns. ``--strategy window``
is duetto's bounded conversation (old turns folded into compressed memory, the KV cache
edited in place); ``--strategy truncate`` drops the oldest turns once the context is
full, which re-reads the whole remaining conversation on every turn after that.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from importlib import resources
from typing import Any

import click
from rich.table import Table

from duetto.app.bench.host import resident_mebibytes as host_resident_mebibytes
from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.app.cli.loading import load_decoder, load_reader, local_only, model_paths
from duetto.app.cli.options import reader_and_target_options
from duetto.app.core.chat import SYSTEM_PROMPT, ChatSession, Listeners, complete
from duetto.app.core.models import Engine
from duetto.engine.decoder import DecodeSettings
from duetto.engine.model_session import ChatMessage
from duetto.engine.reply_stream import Written

BENCH_WINDOW_TOKENS = 1536
BENCH_MEMORY_TOKENS = 384
"""A small window in a 4k context, so that a scripted chat folds within a hundred turns (the chat
app's own window is the whole context)."""


def resident_mebibytes() -> float:
    """This process's resident memory now (Linux /proc; elsewhere the peak from getrusage)."""
    now = host_resident_mebibytes()
    if now is not None:
        return now
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@click.command("bench-chat")
@click.option("--turns", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1, 1024), default=64, show_default=True, help="Per reply.")
@click.option("--strategy", type=click.Choice(["window", "truncate"]), default="window", show_default=True)
@click.option("--window", "window_tokens", type=click.IntRange(256), default=BENCH_WINDOW_TOKENS, show_default=True)
@click.option("--memory", "memory_tokens", type=click.IntRange(32), default=BENCH_MEMORY_TOKENS, show_default=True)
@click.option("--context", "context_length", type=click.IntRange(512), default=4096, show_default=True)
@reader_and_target_options
@click.option("--json", "as_json", is_flag=True, help='Print {"turns": [...], "summary": {...}} on stdout.')
def bench_chat(
    turns: int,
    max_tokens: int,
    strategy: str,
    window_tokens: int,
    memory_tokens: int,
    context_length: int,
    profile: str | None,
    target: str | None,
    reader: str | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """A scripted chat of --turns turns: time to first token, tokens read and RSS for each."""
    if strategy == "window" and window_tokens + memory_tokens + max_tokens > context_length:
        raise click.BadParameter("--window + --memory + --max-tokens must fit in --context", param_hint="--window")
    script = [
        json.loads(line)["prompt"]
        for line in resources.files("duetto.app.bench").joinpath("prompts.jsonl").read_text().splitlines()
        if line.strip()
    ]
    target_path = local_only(model_paths(profile, target, None, False)[0], "bench-chat")
    decoder = load_decoder(target_path, None, context_length=context_length, threads=threads)
    chat: ChatSession | None = None
    if strategy == "window":
        document_reader = load_reader(profile, reader, threads=threads)
        engine = Engine(decoder, lambda: document_reader)
        chat = ChatSession(engine, window_tokens=window_tokens, memory_tokens=memory_tokens)
    settings = DecodeSettings(mode="exact", drafter="lookup", max_tokens=max_tokens)
    messages: list[ChatMessage] = [{"role": "system", "content": SYSTEM_PROMPT}]
    rows: list[dict[str, Any]] = []
    for turn in range(turns):
        question = script[turn % len(script)]
        started = time.perf_counter()
        first_token_at: list[float] = []
        first_token = functools.partial(_note_first_token, first_token_at)

        fold = None
        fold_before_reply = False
        if chat is not None:
            reply = chat.ask(question, settings, Listeners(on_written=first_token))
            stats = reply.stats
            # the fold after the reply is the chat app's, while the user reads it
            fold = reply.fold_after or reply.fold_before
            fold_before_reply = reply.fold_before is not None and reply.fold_after is None
        else:
            messages.append({"role": "user", "content": question})
            answer = complete(decoder, messages, settings, Listeners(on_written=first_token))
            messages.append({"role": "assistant", "content": answer.text})
            stats = answer.stats
        row = {
            "turn": turn + 1,
            "ttft_seconds": round((first_token_at or [time.perf_counter()])[0] - started, 3),
            "prompt_tokens": stats.prompt_tokens,
            "read_tokens": stats.prompt_read_tokens,
            "kv_tokens": len(decoder.target.tokens),
            "rss_mib": round(resident_mebibytes(), 1),
            "folded_messages": fold.folded_messages if fold else 0,
            "fold_seconds": round(fold.seconds, 3) if fold else 0.0,
            "fold_before_reply": fold_before_reply,
            "reply_tokens": stats.tokens,
        }
        rows.append(row)
        stderr_console.print(
            f"turn {row['turn']:3}: first token {row['ttft_seconds']:6.2f} s, read {row['read_tokens']:5} of "
            f"{row['prompt_tokens']:5} prompt tokens, KV {row['kv_tokens']:5}, RSS {row['rss_mib']:7.1f} MiB"
            + (f", folded {fold.folded_messages} messages in {fold.seconds:.1f} s" if fold else "")
        )
    summary = summarize(rows)
    summary.update(strategy=strategy, window_tokens=window_tokens, memory_tokens=memory_tokens)
    if as_json:
        print_json({"turns": rows, "summary": summary})
        return
    table = Table("turns", "median ttft", "max ttft", "median read", "max KV", "RSS")
    for label, part in (("first 10", rows[:10]), ("last 10", rows[-10:]), ("all", rows)):
        table.add_row(
            label,
            f"{statistics.median(r['ttft_seconds'] for r in part):.2f} s",
            f"{max(r['ttft_seconds'] for r in part):.2f} s",
            str(statistics.median(r["read_tokens"] for r in part)),
            str(max(r["kv_tokens"] for r in part)),
            f"{part[-1]['rss_mib']:.0f} MiB",
        )
    stdout_console.print(table)


def _note_first_token(moments: list[float], written: Written) -> None:
    if not moments:
        moments.append(time.perf_counter())


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, part: list[dict[str, Any]]) -> float:
        return round(statistics.median(row[key] for row in part), 3)

    first, last = rows[:10], rows[-10:]
    return {
        "turns": len(rows),
        "ttft_median_first_10": median("ttft_seconds", first),
        "ttft_median_last_10": median("ttft_seconds", last),
        "ttft_max": max(row["ttft_seconds"] for row in rows),
        "read_tokens_median_last_10": median("read_tokens", last),
        "kv_tokens_max": max(row["kv_tokens"] for row in rows),
        "rss_mib_after_first_10": first[-1]["rss_mib"],
        "rss_mib_last": rows[-1]["rss_mib"],
        "folds": sum(1 for row in rows if row["folded_messages"]),
    }
