"""``duetto bench``: every prompt in every mode, side by side in one process.

Speed is compared as ratios measured in the same run (never as absolute timings in
tests). Each run starts from an empty KV cache so every mode pays its own prompt
processing; ``tokens_per_second`` is the decoding rate after the first token.
Greedy exact mode must reproduce target-only output; where it does not, the
target's top-2 logit gap at the first divergence says whether it was a near-tie
(batched and single-token evaluation rounding differently) or a bug. How far that
rounding can move a decision is measured in the same run (``margin_shift``), because
it depends on the CPU and the llama.cpp build: see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.table import Table

from duetto.app.bench.ceiling import batch_costs as measure_ceiling_costs
from duetto.app.bench.ceiling import lookup_ceiling, time_batches
from duetto.app.bench.checks import ChecksError, failed_checks, read_checks_file, validate
from duetto.app.bench.llama_tools import ToolBuildError
from duetto.app.bench.peers import PEER_MODES, PEER_PREFIX, LlamaPeers, PeerError, PeerRun, peer_prompt_text
from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.app.cli.loading import load_decoder, local_only, model_paths
from duetto.app.cli.options import DecodingOptions, decoding_options
from duetto.engine.cost_model import CostModel
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import default_thread_count
from duetto.engine.reply_stream import Reply
from duetto.engine.stats import MODES, ReplyStats

NEAR_TIE_GAP = 0.1  # the engine issue's definition of a near-tie
ROUNDING_CHUNK = 16  # rows per batch when re-reading a reply, a typical verification size
BATCH_COST_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # what --batch-costs times


def read_prompts(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        text = resources.files("duetto.app.bench").joinpath("prompts.jsonl").read_text(encoding="utf-8")
        source = "the built-in prompt set"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise click.BadParameter(f"cannot read {path}: {error}", param_hint="--prompts") from error
        source = str(path)
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            prompts.append({"id": str(entry["id"]), "kind": str(entry.get("kind", "other")), "prompt": entry["prompt"]})
        except (ValueError, KeyError, TypeError) as error:
            raise click.BadParameter(
                f'{source} line {number}: expected {{"id", "kind", "prompt"}} JSON ({error})', param_hint="--prompts"
            ) from error
        if "checks" in entry:
            try:
                prompts[-1]["checks"] = validate(entry["checks"], f"{source} line {number}")
            except ChecksError as error:
                raise click.BadParameter(str(error), param_hint="--prompts") from error
    if not prompts:
        raise click.BadParameter(f"{source} holds no prompts", param_hint="--prompts")
    return prompts


def run_once(decoder: Decoder, prompt_tokens: list[int], settings: DecodeSettings) -> Reply:
    """One reply from an empty KV cache, so that every mode pays its own prompt processing."""
    decoder.target.truncate(0)
    if decoder.draft is not None:
        decoder.draft.truncate(0)
    return decoder.reply(prompt_tokens, settings)


def first_difference(reference: Sequence, candidate: Sequence) -> int | None:
    """The first index where ``candidate`` departs from ``reference`` (tokens or text); None: equal."""
    for index, (expected, actual) in enumerate(zip(reference, candidate, strict=False)):
        if expected != actual:
            return index
    return None if len(reference) == len(candidate) else min(len(reference), len(candidate))


def geometric_mean(values: list[float]) -> float | None:
    values = [value for value in values if value > 0]
    return round(math.exp(sum(math.log(value) for value in values) / len(values)), 3) if values else None


def margin_shift(decoder: Decoder, prompt_tokens: list[int], reply: list[int], gaps: list[float]) -> float | None:
    """How far batched evaluation moves the target's decisions on its own greedy reply.

    Target-only decoding evaluates one token at a time and verification many at once, and
    llama.cpp's CPU kernels round differently by batch size (repacked matrix products run
    four rows at a time, attention goes through tinyBLAS from two rows), so the two see
    slightly different logits. Re-reading the reply in batches and comparing each position's
    margin (the chosen token's logit over the best other) with its single-token top-2 gap
    gives the largest shift seen: a divergence at a smaller gap is rounding, not a bug.
    """
    if not reply or len(gaps) < len(reply):
        return None
    session = decoder.target
    session.truncate(0)
    session.evaluate(prompt_tokens[:-1])
    inputs = [prompt_tokens[-1], *reply[:-1]]  # row i of these predicts reply[i]
    largest = 0.0
    for start in range(0, len(inputs), ROUNDING_CHUNK):
        chunk = inputs[start : start + ROUNDING_CHUNK]
        logits = session.evaluate(chunk, list(range(len(chunk))))
        for row, position in enumerate(range(start, start + len(chunk))):
            chosen = float(logits[row][reply[position]])
            second, first = np.partition(logits[row], -2)[-2:]
            best_other = float(second) if chosen >= first else float(first)
            largest = max(largest, abs(gaps[position] - (chosen - best_other)))
    session.truncate(0)
    return round(largest, 4)


def speedup_numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What every mode's summary starts with, duetto's and llama.cpp's alike: speedups overall and
    by kind, how many replies were the target's text, and the share of drafted tokens accepted."""
    kinds = sorted({row["kind"] for row in rows})
    return {
        "geomean_speedup": geometric_mean([row["speedup"] for row in rows]),
        "min_speedup": min((row["speedup"] for row in rows), default=None),
        "geomean_speedup_by_kind": {
            kind: geometric_mean([row["speedup"] for row in rows if row["kind"] == kind]) for kind in kinds
        },
        "identical_to_target": sum(1 for row in rows if row["identical_to_target"]),
        "prompts": len(rows),
        "acceptance": round(sum(r["accepted"] for r in rows) / max(1, sum(r["drafted"] for r in rows)), 3),
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    shifts = [row["margin_shift"] for row in results if row["mode"] == "target" and row.get("margin_shift") is not None]
    rounding_bound = max(shifts) if shifts else None
    for mode in sorted({result["mode"] for result in results} - {"target"}):
        if mode.startswith(PEER_PREFIX):
            continue
        rows = [result for result in results if result["mode"] == mode and result.get("speedup")]
        divergent = [row for row in rows if row["first_divergence"] is not None]
        summary[mode] = {
            **speedup_numbers(rows),
            "divergences_at_near_tie": sum(
                1 for row in divergent if (row["first_divergence"]["target_top2_gap"] or 0) < NEAR_TIE_GAP
            ),
            "divergences_not_at_near_tie": sum(
                1 for row in divergent if (row["first_divergence"]["target_top2_gap"] or 0) >= NEAR_TIE_GAP
            ),
            "mean_token_agreement": round(sum(row["token_agreement"] for row in rows) / max(1, len(rows)), 3),
        }
        checked = [row for row in rows if row["correct"] is not None]
        if checked:
            # Beside the target's own count on the same prompts: greedy exact mode can be no more
            # right than the target it reproduces, and fast mode is judged against it.
            target_correct = {row["id"] for row in results if row["mode"] == "target" and row["correct"]}
            summary[mode]["checked"] = len(checked)
            summary[mode]["correct"] = sum(1 for row in checked if row["correct"])
            summary[mode]["target_correct"] = sum(1 for row in checked if row["id"] in target_correct)
        if mode == "exact" and rounding_bound is not None:
            # A greedy exact divergence at a gap the measured rounding cannot reach is a decoder bug.
            summary[mode]["rounding_bound"] = rounding_bound
            summary[mode]["divergences_beyond_rounding"] = sum(
                1 for row in divergent if (row["first_divergence"]["target_top2_gap"] or math.inf) >= rounding_bound
            )
    return summary


def summarize_peers(results: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's modes, each over its own target alone, and per kind duetto's exact mode against
    the best of them in the same run."""
    peers: dict[str, Any] = {}
    for mode in [PEER_PREFIX + name for name in PEER_MODES if name != "target"]:
        rows = [result for result in results if result["mode"] == mode and result.get("speedup")]
        if rows:
            peers[mode] = speedup_numbers(rows)
    exact = summary.get("exact", {}).get("geomean_speedup_by_kind", {})
    against: dict[str, Any] = {}
    for kind, ours in exact.items():
        theirs = {mode: numbers["geomean_speedup_by_kind"].get(kind) for mode, numbers in peers.items()}
        theirs = {mode: value for mode, value in theirs.items() if value is not None}
        if not theirs:
            continue
        best = max(theirs, key=theirs.get)
        against[kind] = {"exact": ours, "best_peer": best, "best_peer_speedup": theirs[best],
                         "ahead": ours is not None and ours >= theirs[best]}  # fmt: skip
    return {"modes": peers, "exact_against_best_peer": against}


def peer_results(
    entry: dict[str, Any], runs: dict[str, list[PeerRun]], target_text: str, same_prompt: bool
) -> list[dict[str, Any]]:
    """One result row per llama.cpp mode: the median rate over its repeats, its speedup over
    llama.cpp's own target alone, and whether its text is duetto's target's (greedy, same model)."""
    rows = []
    reference = None
    for mode, repeats in runs.items():
        rate = statistics.median(run.tokens_per_second for run in repeats)
        first = repeats[0]
        if reference is None:
            reference = rate  # the target alone comes first
        rows.append({
            "id": entry["id"], "kind": entry["kind"], "mode": mode, "text": first.text, "tokens": first.tokens,
            "seconds": first.seconds, "tokens_per_second": round(rate, 2),
            "speedup": round(rate / reference, 3) if reference else None,
            "drafted": first.drafted, "accepted": first.accepted,
            "acceptance": round(first.accepted / first.drafted, 3) if first.drafted else None,
            "identical_to_target": None if first.text is None else first.text.strip() == target_text.strip(),
            "same_prompt": same_prompt and None not in [run.text for run in repeats],
            "first_divergence": None, "correct": None, "drafter": mode.removeprefix(PEER_PREFIX),
        })  # fmt: skip
        if entry.get("checks") and first.text is not None:
            rows[-1]["failed_checks"] = failed_checks(first.text, entry["checks"])
            rows[-1]["correct"] = not rows[-1]["failed_checks"]
    return rows


def add_ceiling(
    results: list[dict[str, Any]],
    target_replies: dict[str, tuple[list[int], list[int]]],
    costs: list[float],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Each target row's lookup-oracle speedup (app/bench/ceiling.py) and, per kind, the oracle's
    geometric mean and exact mode's share of it, all from this run."""
    rows = [row for row in results if row["mode"] == "target"]
    for row in rows:
        speedup, drafted = lookup_ceiling(*target_replies[row["id"]], costs)
        row["lookup_ceiling"] = round(speedup, 3)
        row["lookup_ceiling_drafted"] = drafted
    kinds = sorted({row["kind"] for row in rows})
    by_kind = {kind: geometric_mean([row["lookup_ceiling"] for row in rows if row["kind"] == kind]) for kind in kinds}
    exact = summary.get("exact", {}).get("geomean_speedup_by_kind", {})
    return {
        "plain_step_ms": round(costs[1] * 1000, 1),
        "batch_ms": {size: round(costs[size] * 1000, 1) for size in (2, 4, 8, 16, 32, 64) if size < len(costs)},
        "lookup_oracle_by_kind": by_kind,
        "lookup_oracle": geometric_mean([row["lookup_ceiling"] for row in rows]),
        "exact_share_by_kind": {
            kind: round(exact[kind] / oracle, 3) for kind, oracle in by_kind.items() if exact.get(kind) and oracle
        },
    }


def measure_batch_costs(decoder: Decoder, repeats: int = 5) -> list[dict[str, float]]:
    """Median time to evaluate n tokens in one batch (logits on every row, as verification does)."""
    medians = time_batches(decoder.target, BATCH_COST_SIZES, repeats, context=200)
    return [
        {
            "batch": size,
            "milliseconds": round(medians[size] * 1000, 1),
            "milliseconds_per_token": round(medians[size] * 1000 / size, 1),
        }
        for size in BATCH_COST_SIZES
    ]


@click.command()
@click.option(
    "--prompts",
    "prompts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='JSON lines {"id", "kind", "prompt"} (default: a small built-in set).',
)
@click.option("--modes", default="target,exact,fast", show_default=True, help="Comma-separated modes to compare.")
@click.option("--max-tokens", type=click.IntRange(1, 4096), default=200, show_default=True)
@decoding_options
@click.option(
    "--repeat",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Run each prompt this many times per mode (interleaved) and report the median speed.",
)
@click.option(
    "--cold",
    is_flag=True,
    help="Start every reply with nothing learnt or measured, as a one-shot `duetto ask` does "
    "(by default the cost model carries over between replies, as in the chat app).",
)
@click.option(
    "--checks",
    "checks_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='JSON lines {"id", "checks"}: task checks for prompts that carry none (see docs/BENCHMARKS.md).',
)
@click.option(
    "--peers",
    default=None,
    metavar="MODES",
    help="Also run llama.cpp's own tools on the same prompts, interleaved: "
    f"{', '.join(name for name in PEER_MODES if name != 'target')} or all (its target alone always). "
    "They are built from the llama-cpp-python sdist on first use (10-20 minutes) and cached.",
)
@click.option(
    "--ceiling",
    is_flag=True,
    help="Also measure the lookup-oracle ceiling in this run: the target's cost by batch size (a few "
    "minutes), then per prompt how fast a drafter that is never wrong could decode the target's reply; "
    "reports exact mode's share of it per kind.",
)
@click.option("--batch-costs", is_flag=True, help="Instead: time the target's evaluation by batch size, and exit.")
@click.option("--json", "as_json", is_flag=True, help='Print {"results": [...], "summary": {...}} on stdout.')
def bench(
    prompts_path,
    modes,
    max_tokens,
    decoding: DecodingOptions,
    repeat,
    cold,
    checks_path,
    peers,
    ceiling,
    batch_costs,
    as_json,
) -> None:
    """Run every prompt in every mode (greedy) and compare speed and output with the target alone."""
    chosen_modes = [mode.strip() for mode in modes.split(",") if mode.strip()]
    unknown = [mode for mode in chosen_modes if mode not in MODES]
    if unknown or not chosen_modes:
        raise click.BadParameter(f"modes are {', '.join(MODES)}; got {modes!r}", param_hint="--modes")
    if "target" not in chosen_modes:
        chosen_modes.insert(0, "target")  # the reference every ratio is taken against
    chosen_modes.sort(key=MODES.index)
    prompts = read_prompts(prompts_path)
    if checks_path is not None:
        try:
            checks_by_id = read_checks_file(checks_path)
        except ChecksError as error:
            raise click.BadParameter(str(error), param_hint="--checks") from error
        unmatched = sorted(set(checks_by_id) - {entry["id"] for entry in prompts})
        if unmatched:
            raise click.BadParameter(f"{checks_path}: no prompt has the id {unmatched[0]!r}", param_hint="--checks")
        for entry in prompts:
            entry.setdefault("checks", checks_by_id.get(entry["id"]))
    target_path, draft_path = model_paths(decoding.profile, decoding.target, decoding.draft_model, use_draft=True)
    local_only(target_path, "duetto bench (for a remote target: duetto bench-remote NAME)")
    decoder = load_decoder(target_path, draft_path, context_length=decoding.context_length, threads=decoding.threads)
    if draft_path is None and "fast" in chosen_modes:
        chosen_modes.remove("fast")
        stderr_console.print("no draft model: skipping fast mode")
    llama_peers = None
    if peers and not batch_costs:
        wanted = list(PEER_MODES) if peers.strip() == "all" else [name.strip() for name in peers.split(",")]
        unknown = [name for name in wanted if name not in PEER_MODES]
        if unknown:
            raise click.BadParameter(
                f"peer modes are {', '.join(PEER_MODES)} or all; got {peers!r}", param_hint="--peers"
            )
        try:
            with stderr_console.status("finding llama.cpp's tools (building them the first time: 10-20 minutes)"):
                llama_peers = LlamaPeers(
                    target_path, draft_path, threads=decoding.threads or default_thread_count(),
                    context_length=decoder.target.context_length, max_tokens=max_tokens,
                )  # fmt: skip
        except ToolBuildError as error:
            raise click.ClickException(f"llama.cpp's tools: {error}") from None
    peer_modes = [PEER_PREFIX + name for name in llama_peers.modes(wanted)] if llama_peers else []

    if batch_costs:
        rows = measure_batch_costs(decoder)
        if as_json:
            print_json({"target": target_path.name, "batch_costs": rows})
        else:
            for row in rows:
                stdout_console.print(
                    "batch {batch:>3}: {milliseconds:7.1f} ms  ({milliseconds_per_token:.1f} ms/token)".format(**row)
                )
        return
    # One untimed reply first, so the first prompt's numbers do not include cold caches.
    warm_up_tokens = decoder.target.chat_prompt_tokens([{"role": "user", "content": "Say hello."}])
    run_once(decoder, warm_up_tokens, DecodeSettings(mode="target", max_tokens=16))
    results: list[dict[str, Any]] = []
    target_replies: dict[str, tuple[list[int], list[int]]] = {}  # id -> (prompt, the target's reply)
    for number, entry in enumerate(prompts, start=1):
        prompt_tokens = decoder.target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        reference_tokens: list[int] = []
        reference_gaps: list[float] = []
        reference_rate = 0.0
        runs: dict[str, list[tuple[str, ReplyStats, list[int], list[float]]]] = {mode: [] for mode in chosen_modes}
        peer_runs: dict[str, list[PeerRun]] = {mode: [] for mode in peer_modes}
        prompt_text, same_prompt = peer_prompt_text(decoder.target, prompt_tokens)
        every_mode = chosen_modes + peer_modes
        for number_of_repeat in range(repeat):
            # Modes interleaved, so that drifting machine speed hits all alike, and in turn first and
            # last, so that whatever the order itself does (caches, clocks) does too.
            for mode in every_mode if number_of_repeat % 2 == 0 else reversed(every_mode):
                if mode in peer_runs:
                    try:
                        peer_runs[mode].append(
                            llama_peers.run(mode.removeprefix(PEER_PREFIX), entry["id"], prompt_text)
                        )
                    except PeerError as error:
                        raise click.ClickException(str(error)) from None
                    continue
                settings = decoding.settings(mode, max_tokens=max_tokens, record_top_two_gaps=mode == "target")
                if cold:
                    decoder.cost_model = CostModel()
                reply = run_once(decoder, prompt_tokens, settings)
                runs[mode].append((reply.text, reply.stats, reply.token_ids, reply.top_two_gaps))
        target_replies[entry["id"]] = (prompt_tokens, runs["target"][0][2])
        shift = None
        if "exact" in chosen_modes:
            _, _, target_tokens, target_gaps = runs["target"][0]
            shift = margin_shift(decoder, prompt_tokens, target_tokens, target_gaps)
        for mode in chosen_modes:
            text, stats, tokens, gaps = runs[mode][0]
            rate = statistics.median(run[1].tokens_per_second for run in runs[mode])
            stats = replace(stats, tokens_per_second=round(rate, 2))
            if mode == "target":
                reference_tokens, reference_gaps = tokens, gaps
                reference_rate = stats.tokens_per_second
            divergence_index = first_difference(reference_tokens, tokens)
            divergence = None
            if divergence_index is not None:
                gap = reference_gaps[divergence_index] if divergence_index < len(reference_gaps) else None
                divergence = {"index": divergence_index, "target_top2_gap": round(gap, 4) if gap is not None else None}
            agreement_length = len(reference_tokens) if divergence_index is None else divergence_index
            result = {
                "id": entry["id"],
                "kind": entry["kind"],
                "mode": mode,
                "text": text,
                "tokens": stats.tokens,
                "seconds": stats.seconds,
                "tokens_per_second": stats.tokens_per_second,
                "ttft_seconds": stats.ttft_seconds,
                "speedup": round(stats.tokens_per_second / reference_rate, 3) if reference_rate else None,
                "drafted": stats.drafted,
                "accepted": stats.accepted,
                "acceptance": round(stats.accepted / stats.drafted, 3) if stats.drafted else None,
                "target_calls": stats.target_calls,
                "drafter": stats.drafter,
                "identical_to_target": divergence_index is None,
                "first_divergence": divergence,
                "token_agreement": round(agreement_length / max(1, len(reference_tokens)), 3),
                "correct": None,
            }
            if entry.get("checks"):
                result["failed_checks"] = failed_checks(text, entry["checks"])
                result["correct"] = not result["failed_checks"]
            if mode == "target":
                result["margin_shift"] = shift
            results.append(result)
            stderr_console.print(
                f"[{number}/{len(prompts)}] {entry['id']:<28} {mode:<6} {stats.tokens_per_second:6.1f} tok/s"
                + (f"  x{result['speedup']:.2f}" if mode != "target" and result["speedup"] else "")
                + ("" if mode == "target" or divergence is None else f"  diverges at {divergence['index']}")
            )
        if peer_modes:
            results.extend(peer_results(entry, peer_runs, runs["target"][0][0], same_prompt))
            for row in results[-len(peer_modes) :]:
                stderr_console.print(
                    f"[{number}/{len(prompts)}] {entry['id']:<28} {row['mode']} {row['tokens_per_second']:6.1f} tok/s"
                    + (f"  x{row['speedup']:.2f}" if row["speedup"] and row["mode"] != peer_modes[0] else "")
                )
    summary = summarize(results)
    if ceiling:
        with stderr_console.status("timing the target by batch size, for the lookup-oracle ceiling"):
            costs = measure_ceiling_costs(decoder.target)
        summary["ceiling"] = add_ceiling(results, target_replies, costs, summary)
    if llama_peers:
        llama_peers.close()
    if peer_modes:
        summary["peers"] = summarize_peers(results, summary)
    if as_json:
        print_json(
            {
                "target": target_path.name,
                "draft": draft_path.name if draft_path else None,
                "max_tokens": max_tokens,
                "repeat": repeat,
                "cold": cold,
                "results": results,
                "summary": summary,
            }
        )
        return
    table = Table(title=f"duetto bench: {target_path.name}" + (f" with {draft_path.name}" if draft_path else ""))
    for column in ("prompt", "kind", "mode", "tok/s", "speedup", "accepted", "same as target", "correct", "drafter"):
        table.add_column(column, justify="right" if column in ("tok/s", "speedup", "accepted") else "left")
    for result in results:
        if result["identical_to_target"]:
            same = "yes"
        elif result["first_divergence"] is None:  # a llama.cpp mode: its text against duetto's target's
            same = "no" if result["identical_to_target"] is False else "?"
        else:
            same = "from token {index} (gap {target_top2_gap})".format(**result["first_divergence"])
        table.add_row(
            result["id"],
            result["kind"],
            result["mode"],
            f"{result['tokens_per_second']:.1f}",
            f"{result['speedup']:.2f}x" if result["speedup"] else "-",
            f"{result['acceptance']:.0%}" if result["acceptance"] is not None else "-",
            "-" if result["mode"] == "target" else same,
            "-" if result["correct"] is None else ("yes" if result["correct"] else "; ".join(result["failed_checks"])),
            result["drafter"],
        )
    stdout_console.print(table)
    for mode, numbers in summary.items():
        if mode in ("peers", "ceiling"):
            continue
        stdout_console.print(
            f"{mode}: geometric mean speedup {numbers['geomean_speedup']}x (min {numbers['min_speedup']}x), "
            f"by kind {numbers['geomean_speedup_by_kind']}, identical {numbers['identical_to_target']}/"
            f"{numbers['prompts']}, near-tie divergences {numbers['divergences_at_near_tie']}, "
            f"other divergences {numbers['divergences_not_at_near_tie']}"
            + (
                f" (rounding moves decisions by up to {numbers['rounding_bound']}; "
                f"divergences beyond that: {numbers['divergences_beyond_rounding']})"
                if "rounding_bound" in numbers
                else ""
            )
            + (
                f", task checks passed {numbers['correct']}/{numbers['checked']} "
                f"(target alone {numbers['target_correct']}/{numbers['checked']})"
                if "checked" in numbers
                else ""
            )
        )
    for mode, numbers in summary.get("peers", {}).get("modes", {}).items():
        stdout_console.print(
            f"{mode}: geometric mean speedup {numbers['geomean_speedup']}x over llama.cpp's target alone "
            f"(min {numbers['min_speedup']}x), by kind {numbers['geomean_speedup_by_kind']}, "
            f"same text as duetto's target {numbers['identical_to_target']}/{numbers['prompts']}"
        )
    if "ceiling" in summary:
        for kind, oracle in summary["ceiling"]["lookup_oracle_by_kind"].items():
            share = summary["ceiling"]["exact_share_by_kind"].get(kind)
            stdout_console.print(
                f"{kind}: the lookup-oracle ceiling {oracle}x"
                + (f"; exact mode reached {share:.0%} of it" if share is not None else "")
            )
    for kind, against in summary.get("peers", {}).get("exact_against_best_peer", {}).items():
        stdout_console.print(
            f"{kind}: exact {against['exact']}x against the best llama.cpp mode, {against['best_peer']} "
            f"{against['best_peer_speedup']}x: {'ahead' if against['ahead'] else 'behind'}"
        )
