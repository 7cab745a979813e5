"""``duetto bench-plugin``: does a user's plugin help their own writing and stay out of the way?

One run, on the target model, with texts the repository ships (app/bench/plugin_texts/, or
``--texts DIR`` with the same file names):

- a user's text in a distinctive style (``user-train.txt``) to train on, and more of it never
  trained on (``user-heldout.txt``);
- generic prose and generic code (``generic-prose.txt``, ``generic-code.txt``), different from the
  generic text duetto trains the gate with (app/core/generic_text/).

It reports the perplexity change on each, the training time against the time the same target
takes to read the training text once (a plain read: every window evaluated from an empty cache
with one output row, as a prompt is read), measured side by side in this run, the plugin's size,
and the generation rate with and without it. Training is timed as every training but a machine's
first runs: with duetto's generic text already read (``plugin train`` keeps that reading per
model); the one-time reading is timed and reported beside it. Nothing is written outside a
temporary directory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from duetto.app.bench.host import host_description
from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.app.cli.loading import local_only, model_paths
from duetto.app.cli.plugin import TaskProgress
from duetto.app.core.plugins import generic_texts, read_user_text
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ChatMessage, ModelSession
from duetto.engine.plugin import SidePlugin
from duetto.engine.plugin_files import save_side_plugin
from duetto.engine.plugin_session import PersonalisedSession
from duetto.engine.plugin_training import TrainingSettings, measure, read_generic, train_side_plugin, windows

TEXT_FILES = {
    "train": "user-train.txt",
    "user": "user-heldout.txt",
    "prose": "generic-prose.txt",
    "code": "generic-code.txt",
}
GENERATION_PROMPTS = (
    "Write the next entry of my work diary, in my usual style.",
    "Write a Python function that merges two sorted lists, with a docstring.",
    "Explain in one paragraph what a hash table is.",
)
TARGETS = {
    "user_change": -0.15,  # at most: the user's perplexity at least 15% lower
    "prose_change": 0.02,  # at most: generic prose at most 2% higher
    "code_change": 0.02,
    "training_ratio": 1.5,  # at most: training / one plain read of the training text
    "plugin_bytes": 10_000_000,  # under
    "slowdown": 0.05,  # at most: generation 5% slower with the plugin
}
CONTEXT_LENGTH = 1024


def _texts_folder(texts: Path | None) -> Traversable | Path:
    return texts if texts is not None else resources.files("duetto.app.bench") / "plugin_texts"


def _read_texts(folder: Traversable | Path) -> dict[str, str]:
    if isinstance(folder, Path):
        return {key: read_user_text(folder / name) for key, name in TEXT_FILES.items()}
    return {key: (folder / name).read_text(encoding="utf-8") for key, name in TEXT_FILES.items()}


def plain_read_seconds(session: ModelSession, tokens: list[int], window: int) -> float:
    """Seconds the target takes to read ``tokens`` once, window by window from an empty cache,
    with one output row per window: the reference the training time is compared with."""
    started = time.perf_counter()
    for start, end in windows(len(tokens), window):
        session.truncate(0)
        session.evaluate(tokens[start:end], [end - start - 1])
    session.truncate(0)
    return time.perf_counter() - started


def generation_rates(
    session: ModelSession, plugin: SidePlugin, mode: str, max_tokens: int, repeat: int
) -> dict[str, list[float]]:
    """Tokens per second of greedy replies to GENERATION_PROMPTS without and with the plugin,
    interleaved (without, with, without, ...) so that the machine's drift falls on both."""
    rates: dict[str, list[float]] = {"without": [], "with": []}
    settings = DecodeSettings(mode=mode, max_tokens=max_tokens)
    for _ in range(repeat):
        for prompt in GENERATION_PROMPTS:
            tokens = session.chat_prompt_tokens([ChatMessage(role="user", content=prompt)])
            for label in ("without", "with"):
                session.truncate(0)
                decoder_target = PersonalisedSession(session, side_plugin=plugin) if label == "with" else session
                reply = Decoder(decoder_target).reply(tokens, settings)
                if isinstance(decoder_target, PersonalisedSession):
                    decoder_target.detach()
                rates[label].append(reply.stats.tokens_per_second)
    session.truncate(0)
    return rates


def _change(result: tuple[float, float, int]) -> float:
    base, personalised, _ = result
    return personalised / base - 1


@click.command("bench-plugin")
@click.option(
    "--texts",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="A folder with user-train.txt, user-heldout.txt, generic-prose.txt and generic-code.txt "
    "(default: the ones duetto ships).",
)
@click.option("--profile", default=None, help="Model profile whose target is measured.")
@click.option("--target", default=None, metavar="MODEL|PATH", help="Target model instead of the profile's.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads for llama.cpp.")
@click.option("--mode", type=click.Choice(["target", "exact"]), default="target", show_default=True)
@click.option("--max-tokens", type=click.IntRange(8, 1024), default=96, show_default=True, help="Per reply.")
@click.option("--repeat", type=click.IntRange(1, 20), default=2, show_default=True, help="Generation repeats.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
def bench_plugin(
    texts: Path | None,
    profile: str | None,
    target: str | None,
    threads: int | None,
    mode: str,
    max_tokens: int,
    repeat: int,
    as_json: bool,
) -> None:
    """Train a plugin on a distinctive text and measure what it does to that style, to generic prose
    and code, to training time (against one read of the text) and to generation speed."""
    text = _read_texts(_texts_folder(texts))
    target_path = local_only(model_paths(profile, target, None, use_draft=False)[0], "bench-plugin")
    settings = TrainingSettings()
    with stderr_console.status(f"loading {target_path.name}"):
        session = ModelSession(target_path, context_length=CONTEXT_LENGTH, threads=threads)
    try:
        tokens = {key: session.tokenize(value) for key, value in text.items()}
        with stderr_console.status("reading the training text once (the reference)"):
            read_seconds = plain_read_seconds(session, tokens["train"], settings.window)
        stderr_console.print(f"one plain read of {len(tokens['train'])} tokens: {read_seconds:.1f} s")
        with TaskProgress() as progress:
            started = time.perf_counter()
            generic = [
                read_generic(
                    session,
                    session.tokenize(value),
                    window=settings.window,
                    progress=progress,
                    label="reading duetto's generic text (what training does once per model)",
                )
                for value in generic_texts()
            ]
            generic_read_seconds = time.perf_counter() - started
            started = time.perf_counter()
            plugin, report = train_side_plugin(session, tokens["train"], settings, progress, generic=generic)
            training_seconds = time.perf_counter() - started
            stderr_console.print(
                f"training: {training_seconds:.1f} s ({training_seconds / read_seconds:.2f}x the read), "
                f"after reading the generic text once per model: {generic_read_seconds:.1f} s"
            )
            scores = {
                key: measure(session, tokens[key], plugin, window=settings.window, progress=progress)
                for key in ("user", "prose", "code")
            }
        with tempfile.TemporaryDirectory(prefix="duetto-bench-plugin-") as directory:
            plugin_bytes = save_side_plugin(Path(directory), plugin).stat().st_size
        with stderr_console.status(f"generating with and without the plugin ({mode} mode)"):
            rates = generation_rates(session, plugin, mode, max_tokens, repeat)
    finally:
        session.close()
    without, with_plugin = statistics.median(rates["without"]), statistics.median(rates["with"])
    result: dict[str, Any] = {
        "host": host_description(),
        "target": target_path.name,
        "tokens": {key: len(value) for key, value in tokens.items()},
        "perplexity": {
            key: {"base": round(base, 4), "plugin": round(personalised, 4), "positions": count}
            for key, (base, personalised, count) in scores.items()
        },
        "user_change": round(_change(scores["user"]), 4),
        "prose_change": round(_change(scores["prose"]), 4),
        "code_change": round(_change(scores["code"]), 4),
        "read_seconds": round(read_seconds, 2),
        "training_seconds": round(training_seconds, 2),
        "training_ratio": round(training_seconds / read_seconds, 3),
        "generic_read_seconds": round(generic_read_seconds, 2),
        "first_training_ratio": round((training_seconds + generic_read_seconds) / read_seconds, 3),
        "training_report": report.__dict__,
        "plugin_bytes": plugin_bytes,
        "generation": {
            "mode": mode,
            "max_tokens": max_tokens,
            "tokens_per_second_without": round(without, 2),
            "tokens_per_second_with": round(with_plugin, 2),
            "rates": rates,
        },
        "slowdown": round(1 - with_plugin / without, 4),
    }
    result["targets_met"] = {
        key: result[key] < limit if key == "plugin_bytes" else result[key] <= limit for key, limit in TARGETS.items()
    }
    if as_json:
        print_json(result)
        return
    _print_table(result)


def _print_table(result: dict[str, Any]) -> None:
    host = result["host"]
    table = Table(
        title=f"plugin on {result['target']}; {host['cpu']}, {host['cores']} cores, {' '.join(host['flags'])}"
    )
    for column in ("measure", "without", "with", "change", "target"):
        table.add_column(column)
    met = result["targets_met"]

    def verdict(key: str) -> str:
        return "met" if met[key] else "NOT met"

    labels = {"user": "user's held-out text", "prose": "generic prose", "code": "generic code"}
    limits = {"user": "<= -15%", "prose": "<= +2%", "code": "<= +2%"}
    for key, label in labels.items():
        numbers = result["perplexity"][key]
        change = result[f"{key}_change"]
        table.add_row(
            f"perplexity, {label}",
            f"{numbers['base']:.3f}",
            f"{numbers['plugin']:.3f}",
            f"{change:+.1%}",
            f"{limits[key]}: {verdict(key + '_change')}",
        )
    table.add_row(
        "training / one read of the text",
        f"{result['read_seconds']:.1f} s",
        f"{result['training_seconds']:.1f} s",
        f"{result['training_ratio']:.2f}x",
        f"<= 1.5x: {verdict('training_ratio')}",
    )
    table.add_row(
        "  a machine's first, reading the generic text too",
        "",
        f"{result['training_seconds'] + result['generic_read_seconds']:.1f} s",
        f"{result['first_training_ratio']:.2f}x",
        "",
    )
    generation = result["generation"]
    table.add_row(
        f"generation, {generation['mode']} mode, tok/s",
        f"{generation['tokens_per_second_without']:.2f}",
        f"{generation['tokens_per_second_with']:.2f}",
        f"{-result['slowdown']:+.1%}",
        f"<= 5% slower: {verdict('slowdown')}",
    )
    table.add_row("plugin size", "", f"{result['plugin_bytes']:,} bytes", "", f"< 10 MB: {verdict('plugin_bytes')}")
    stdout_console.print(table)
