"""``duetto bench-remote NAME``: a remote target against the local one, and a team sharing it.

- **same answers**: each prompt greedy through the remote target (duetto's own prompt, the token
  ids) and through the local target alone (the profile's, or ``--target-file``), compared token
  for token; a difference is reported with its index, and the local target's top-2 logit gap
  there (a near-tie is where two builds of the same model may part);
- **team**: rounds of 1, then ``--clients`` duetto clients asking at once, each through its own
  RemoteDecoder as separate duetto processes would: every client answered or not, the aggregate
  and per-client rates against one client alone.

The server is the user's (``duetto models add-remote``); start it with ``--parallel N`` to serve
N clients at once. Speed ratios are measured side by side in one run.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import click

from duetto.app.bench.bench import first_difference, read_prompts
from duetto.app.bench.bench_serve import public_prompts
from duetto.app.bench.host import host_description
from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.app.cli.loading import load_decoder, model_paths
from duetto.app.core.remote import build_remote_engine, remote_endpoint
from duetto.engine.decoder import DecodeSettings
from duetto.engine.errors import EngineError
from duetto.engine.stats import ReplyStats

LOCAL_CONTEXT = 4096
"""The local target's context: a public prompt and its answer fit."""


def _greedy(decoder, prompt_tokens: list[int], max_tokens: int, *, gaps: bool = False):
    settings = DecodeSettings(mode="target", max_tokens=max_tokens, temperature=0.0, record_top_two_gaps=gaps)
    return decoder.reply(prompt_tokens, settings)


def same_answers(remote_decoder, local_decoder, prompts: list[dict], max_tokens: int) -> list[dict[str, Any]]:
    rows = []
    for entry in prompts:
        prompt = local_decoder.target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        remote = _greedy(remote_decoder, prompt, max_tokens)
        local = _greedy(local_decoder, prompt, max_tokens, gaps=True)
        written = [_without_end(reply.token_ids, local_decoder.target) for reply in (local, remote)]
        index = first_difference(*written)
        gap = local.top_two_gaps[index] if index is not None and index < len(local.top_two_gaps) else None
        rows.append({
            "id": entry["id"], "kind": entry["kind"], "identical": index is None and remote.text == local.text,
            "first_difference": index, "local_top2_gap": round(gap, 4) if gap is not None else None,
            "remote_tokens_per_second": round(remote.stats.tokens_per_second, 2),
            "local_tokens_per_second": round(local.stats.tokens_per_second, 2),
            "remote_drafted": remote.stats.drafted, "remote_accepted": remote.stats.accepted,
        })  # fmt: skip
    return rows


def _without_end(tokens: list[int], session) -> list[int]:
    """The reply's tokens without the end-of-turn token one side reports and the other not."""
    tokens = list(tokens)
    while tokens and session.is_end_of_generation(tokens[-1]):
        tokens.pop()
    return tokens


def team_round(endpoint, draft_path: Path, prompts: list[dict], clients: int, max_tokens: int) -> dict[str, Any]:
    """``clients`` engines asking at once, one prompt each (round robin over the prompts)."""
    engines = [build_remote_engine(endpoint, draft_path) for _ in range(clients)]
    results: list[ReplyStats | str | None] = [None] * clients
    start = threading.Barrier(clients)

    def client(index: int) -> None:
        decoder = engines[index].decoder
        entry = prompts[index % len(prompts)]
        prompt = decoder.target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        start.wait()
        try:
            results[index] = _greedy(decoder, prompt, max_tokens).stats
        except EngineError as error:
            results[index] = str(error)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    for engine in engines:
        engine.close()
    answered = [result for result in results if isinstance(result, ReplyStats)]
    tokens = sum(stats.tokens for stats in answered)
    return {
        "clients": clients,
        "answered": len(answered),
        "errors": [result for result in results if isinstance(result, str)],
        "wall_seconds": round(wall, 2),
        "aggregate_tokens_per_second": round(tokens / wall, 2) if wall else None,
        "per_client_tokens_per_second": round(statistics.median(s.tokens_per_second for s in answered), 2)
        if answered
        else None,
    }


@click.command("bench-remote")
@click.argument("name")
@click.option("--prompts", "prompts_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Prompt file in duetto's bench format (default: the public prompt set).")  # fmt: skip
@click.option("--parts", default="answers,team", show_default=True, help="Which measurements to run.")
@click.option("--max-tokens", type=click.IntRange(1, 2048), default=160, show_default=True)
@click.option("--clients", type=click.IntRange(1, 64), default=8, show_default=True, help="The team's size.")
@click.option("--profile", default=None, help="Profile whose small model writes the prompts and whose target is local.")
@click.option("--target-file", default=None, metavar="MODEL|PATH", help="The local target to compare with.")
@click.option(
    "--draft-model", default=None, metavar="MODEL|PATH", help="The local small model (default: the profile's)."
)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads of the local target.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON on stdout.")
def bench_remote(name, prompts_path, parts, max_tokens, clients, profile, target_file, draft_model, threads, as_json):
    """Compare remote target NAME with the local target (greedy, token for token) and measure a
    team of CLIENTS asking it at once against one client alone."""
    endpoint = remote_endpoint(name)
    if endpoint is None:
        raise click.BadParameter(f"no remote target named {name!r}; see: duetto models list", param_hint="NAME")
    chosen = {part.strip() for part in parts.split(",") if part.strip()}
    if not chosen or chosen - {"answers", "team"}:
        raise click.BadParameter("parts are answers and team", param_hint="--parts")
    prompts = read_prompts(prompts_path or public_prompts())
    _, draft_path = model_paths(profile, name, draft_model, True)
    report: dict[str, Any] = {"host": host_description(), "remote": endpoint.name, "url": endpoint.url}
    if "answers" in chosen:
        local_path, _ = model_paths(profile, target_file, None, False)
        remote = build_remote_engine(endpoint, draft_path)
        local = load_decoder(local_path, None, context_length=LOCAL_CONTEXT, threads=threads)
        stderr_console.print(f"same answers: {len(prompts)} prompts, {endpoint.name} against {local_path.name}")
        report["answers"] = same_answers(remote.decoder, local, prompts, max_tokens)
        remote.close()
        local.target.close()
    if "team" in chosen:
        stderr_console.print(f"team: 1 client, then {clients} at once")
        alone = team_round(endpoint, draft_path, prompts, 1, max_tokens)
        together = team_round(endpoint, draft_path, prompts, clients, max_tokens)
        if alone["aggregate_tokens_per_second"] and together["aggregate_tokens_per_second"]:
            together["aggregate_vs_alone"] = round(
                together["aggregate_tokens_per_second"] / alone["aggregate_tokens_per_second"], 2
            )
        report["team"] = {"alone": alone, "together": together}
    if as_json:
        print_json(report)
        return
    host = report["host"]
    stdout_console.print(f"host: {host['cpu']}, {host['cores']} cores, flags {' '.join(host['flags'])}", markup=False)
    for row in report.get("answers", []):
        verdict = "identical" if row["identical"] else (
            f"differs at token {row['first_difference']} (local top-2 gap {row['local_top2_gap']})")  # fmt: skip
        stdout_console.print(f"{row['id']:>12} {row['kind']:>8}: {verdict}", markup=False)
    if "answers" in report:
        same = sum(row["identical"] for row in report["answers"])
        stdout_console.print(f"same answers: {same} of {len(report['answers'])}")
    if "team" in report:
        team = report["team"]
        for label in ("alone", "together"):
            part = team[label]
            stdout_console.print(
                f"{part['clients']} client(s): {part['answered']} answered, "
                f"{part['aggregate_tokens_per_second']} tok/s in all, "
                f"{part['per_client_tokens_per_second']} tok/s each (median), {part['wall_seconds']} s",
                markup=False,
            )
