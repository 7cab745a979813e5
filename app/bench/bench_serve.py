"""``duetto bench-serve``: what serving costs, what predicted outputs give, and many clients at once.

A ``duetto serve`` is started as a user starts it, and measured from outside, with plain HTTP:

- **overhead**: each prompt through the server (streaming, one client; the rate the client sees
  from its first token to its last) against ``duetto ask --json`` (a process per question, the
  rate it reports), interleaved, on the same context size;
- **prediction**: the edit prompts with the code they quote given as ``prediction`` against the
  same request without one, exact mode, interleaved, each on a server started for it (a server's
  cost model learns from every reply); the outputs compared, and the target alone beside them;
- **clients**: rounds of concurrent streaming clients: each answered (a whole stream ending in
  ``[DONE]``), refused (503 with Retry-After), or lost (an error, a broken stream, no answer in
  time); the server's resident memory after each round.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from duetto.app.bench.bench import first_difference, read_prompts
from duetto.app.bench.host import host_description, resident_mebibytes
from duetto.app.cli.console import print_json, stderr_console, stdout_console

BENCH_CONTEXT = 4096
"""The context both sides run with (``duetto ask`` picks 4,096 for a short question itself)."""
CODE_BLOCK = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)```", re.DOTALL)
REQUEST_TIMEOUT = 600.0


def public_prompts() -> Path:
    return Path(str(resources.files("duetto.app.bench").joinpath("public_prompts.jsonl")))


class Server:
    """A ``duetto serve`` subprocess on a free port."""

    def __init__(self, arguments: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "duetto.app", "serve", "--port", "0", *arguments],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()
        if not line.startswith("duetto serve: http"):
            self.process.kill()
            raise click.ClickException(f"duetto serve did not start: {self.process.stderr.read().strip()[-400:]}")
        self._log: list[str] = []
        threading.Thread(target=lambda: self._log.extend(self.process.stderr), daemon=True).start()
        address = urlsplit(line.split(": ", 1)[1].strip())
        self.host, self.port = address.hostname, address.port

    def resident_mebibytes(self) -> float | None:
        return resident_mebibytes(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(2)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request; streamed ones are read event by event, timing the first and last text."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        sent = time.perf_counter()
        try:
            connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                return {"status": response.status, "retry_after": response.getheader("Retry-After"),
                        "error": json.loads(response.read() or b"{}").get("error", {})}  # fmt: skip
            if not body.get("stream"):
                answer = json.loads(response.read())
                return {"status": 200, "text": answer["choices"][0]["message"]["content"], **_numbers(answer)}
            return _read_stream(response, sent)
        except (OSError, http.client.HTTPException, ValueError) as error:
            return {"status": None, "error": {"message": str(error)}}
        finally:
            connection.close()


def _numbers(answer: dict[str, Any]) -> dict[str, Any]:
    details = answer["usage"]["completion_tokens_details"]
    return {
        "tokens": answer["usage"]["completion_tokens"],
        "server_rate": answer["duetto"]["stats"]["tokens_per_second"],
        "seconds": answer["duetto"]["stats"]["seconds"],
        "accepted_prediction": details["accepted_prediction_tokens"],
        "rejected_prediction": details["rejected_prediction_tokens"],
        "drafted": answer["timings"]["draft_n"],
        "accepted": answer["timings"]["draft_n_accepted"],
    }


def _read_stream(response: http.client.HTTPResponse, sent: float) -> dict[str, Any]:
    text, moments, numbers, done = [], [], {}, False
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data: "):
            continue
        payload = line.removeprefix("data: ")
        if payload == "[DONE]":
            done = True
            break
        chunk = json.loads(payload)
        if "error" in chunk:
            return {"status": 200, "error": chunk["error"]}
        if chunk.get("choices"):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                text.append(piece)
                moments.append(time.perf_counter())
            if chunk["choices"][0].get("finish_reason"):
                numbers["server_rate"] = chunk["duetto"]["stats"]["tokens_per_second"]
        if chunk.get("usage"):
            numbers["tokens"] = chunk["usage"]["completion_tokens"]
    if not done:
        return {"status": 200, "error": {"message": "the stream ended without [DONE]"}}
    tokens = numbers.get("tokens", 0)
    span = moments[-1] - moments[0] if len(moments) > 1 else 0.0
    return {
        "status": 200, "text": "".join(text), "tokens": tokens, "server_rate": numbers.get("server_rate"),
        "client_rate": round((tokens - 1) / span, 2) if tokens > 1 and span > 0 else None,
        "first_text_seconds": round(moments[0] - sent, 3) if moments else None,
    }  # fmt: skip


def _ask(arguments: list[str], prompt: str, mode: str, max_tokens: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "duetto.app", "ask", prompt, "--json", "--mode", mode, "--max-tokens", str(max_tokens),
         *arguments],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=REQUEST_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        raise click.ClickException(f"duetto ask failed: {result.stderr.strip()[-400:]}")
    answer = json.loads(result.stdout)
    return {"text": answer["text"], "tokens": answer["stats"]["tokens"], "rate": answer["stats"]["tokens_per_second"]}


def _chat(prompt: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": "duetto", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, **extra}  # fmt: skip


def measure_overhead(server: Server, model_arguments, prompts, modes, max_tokens, repeat) -> list[dict[str, Any]]:
    rows = []
    for entry in prompts:
        for mode in modes:
            asked, served = [], []
            for number in range(repeat):
                order = ("ask", "serve") if number % 2 == 0 else ("serve", "ask")
                for side in order:
                    if side == "ask":
                        asked.append(_ask(model_arguments, entry["prompt"], mode, max_tokens))
                    else:
                        body = _chat(entry["prompt"], max_tokens, stream=True, stream_options={"include_usage": True},
                                     duetto={"mode": mode})  # fmt: skip
                        served.append(server.post(body))
                        if served[-1].get("error"):
                            raise click.ClickException(f"the server failed: {served[-1]['error']}")
            ask_rate = statistics.median(run["rate"] for run in asked)
            serve_rate = statistics.median(run["client_rate"] or 0.0 for run in served)
            row = {
                "id": entry["id"], "kind": entry["kind"], "mode": mode, "tokens": served[0]["tokens"],
                "ask_rate": ask_rate, "serve_client_rate": serve_rate,
                "serve_server_rate": statistics.median(run["server_rate"] or 0.0 for run in served),
                "ratio": round(serve_rate / ask_rate, 3) if ask_rate else None,
                "same_text": asked[0]["text"] == served[0]["text"],
            }  # fmt: skip
            rows.append(row)
            stderr_console.print(
                f"[dim]overhead {entry['id']} {mode}: ask {ask_rate:.1f} tok/s, served {serve_rate:.1f} tok/s "
                f"({row['ratio']}x)[/dim]"
            )
    return rows


def measure_prediction(model_arguments: list[str], prompts, max_tokens, repeat) -> list[dict[str, Any]]:
    """Each request on a server started for it: a server's cost model learns from every reply,
    and one arm's replies must not teach the other's (as ``duetto bench --cold``)."""
    rows = []
    for entry in prompts:
        quoted = CODE_BLOCK.search(entry["prompt"])
        if entry["kind"] != "edit" or quoted is None:
            continue
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for number in range(repeat):
            for side in ("without", "with") if number % 2 == 0 else ("with", "without"):
                extra = {"prediction": {"type": "content", "content": quoted.group(1)}} if side == "with" else {}
                runs[side].append(_on_a_fresh_server(model_arguments, _chat(entry["prompt"], max_tokens, **extra)))
        target = _on_a_fresh_server(model_arguments, _chat(entry["prompt"], max_tokens, duetto={"mode": "target"}))
        rate = {side: statistics.median(run["server_rate"] for run in runs[side]) for side in runs}
        seconds = {side: statistics.median(run["seconds"] for run in runs[side]) for side in runs}
        row = {
            "id": entry["id"], "tokens": runs["with"][0]["tokens"],
            "rate_without": rate["without"], "rate_with": rate["with"],
            "seconds_without": seconds["without"], "seconds_with": seconds["with"],
            "rate_target": target["server_rate"],
            "speedup": round(rate["with"] / rate["without"], 3) if rate["without"] else None,
            "speedup_over_target": round(rate["with"] / target["server_rate"], 3) if target["server_rate"] else None,
            "accepted_prediction": statistics.median(run["accepted_prediction"] for run in runs["with"]),
            "rejected_prediction": statistics.median(run["rejected_prediction"] for run in runs["with"]),
            "identical": all(run["text"] == runs["without"][0]["text"] for side in runs for run in runs[side]),
            # Where each run departs from the target alone (None: it does not): batched and single-token
            # evaluation round differently, so exact mode may depart at a near-tie with or without a
            # prediction (duetto bench measures how far rounding moves a decision).
            "departures_from_target": {
                side: [first_difference(target["text"], run["text"]) for run in runs[side]] for side in runs
            },
        }  # fmt: skip
        rows.append(row)
        stderr_console.print(
            f"[dim]prediction {entry['id']}: {rate['without']:.1f} -> {rate['with']:.1f} tok/s ({row['speedup']}x), "
            f"prediction tokens accepted {row['accepted_prediction']}, rejected {row['rejected_prediction']}[/dim]"
        )
    return rows


def _on_a_fresh_server(model_arguments: list[str], body: dict[str, Any]) -> dict[str, Any]:
    server = Server(model_arguments)
    try:
        answer = server.post(body)
    finally:
        server.stop()
    if answer.get("error"):
        raise click.ClickException(f"the server failed: {answer['error']}")
    return answer


def measure_clients(server: Server, prompts, clients: int, rounds: int, max_tokens: int) -> dict[str, Any]:
    open_prompts = [entry["prompt"] for entry in prompts if entry["kind"] == "open"] or [prompts[0]["prompt"]]
    counts = {"answered": 0, "refused": 0, "lost": 0}
    memory, refusals_without_retry_after, seconds = [], 0, []
    for number in range(rounds):
        results: list[dict[str, Any] | None] = [None] * clients

        def client(index: int, results: list[dict[str, Any] | None] = results) -> None:
            body = _chat(open_prompts[index % len(open_prompts)], max_tokens, stream=True,
                         stream_options={"include_usage": True})  # fmt: skip
            results[index] = server.post(body)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT)
        seconds.append(round(time.perf_counter() - started, 2))
        for result in results:
            if result is None or result["status"] is None or result.get("error") and result["status"] == 200:
                counts["lost"] += 1
            elif result["status"] == 200:
                counts["answered"] += 1
            elif result["status"] == 503:
                counts["refused"] += 1
                refusals_without_retry_after += result.get("retry_after") is None
            else:
                counts["lost"] += 1
        memory.append(server.resident_mebibytes())
        stderr_console.print(f"[dim]clients round {number + 1}: {counts}, server RSS {memory[-1]:.0f} MiB[/dim]")
    return {
        "clients": clients, "rounds": rounds, **counts, "refused_without_retry_after": refusals_without_retry_after,
        "round_seconds": seconds, "server_rss_mib": [round(value, 1) if value else None for value in memory],
    }  # fmt: skip


def geometric_mean(values: list[float]) -> float | None:
    values = [value for value in values if value]
    return round(statistics.geometric_mean(values), 3) if values else None


@click.command("bench-serve")
@click.option("--prompts", "prompts_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Prompt file in bench format (default: the public prompt set).")  # fmt: skip
@click.option("--parts", default="overhead,prediction,clients", show_default=True, help="Which measurements to run.")
@click.option("--modes", default="target,exact", show_default=True, help="Modes of the overhead measurement.")
@click.option("--max-tokens", type=click.IntRange(1, 2048), default=160, show_default=True)
@click.option("--repeat", type=click.IntRange(1, 20), default=2, show_default=True)
@click.option("--clients", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--profile", default=None, help="Model profile (default: default).")
@click.option("--target", default=None, metavar="MODEL|PATH", help="Large model instead of the profile's.")
@click.option("--draft-model", default=None, metavar="MODEL|PATH", help="Draft model instead of the profile's.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON on stdout.")
def bench_serve(prompts_path, parts, modes, max_tokens, repeat, clients, rounds, profile, target, draft_model, threads,
                as_json) -> None:  # fmt: skip
    """Measure `duetto serve` from outside: its overhead against `duetto ask`, predicted outputs
    on the edit prompts, and concurrent clients (answered, refused, lost; the server's memory)."""
    chosen = {part.strip() for part in parts.split(",") if part.strip()}
    if not chosen or chosen - {"overhead", "prediction", "clients"}:
        raise click.BadParameter("parts are overhead, prediction and clients", param_hint="--parts")
    mode_list = [mode.strip() for mode in modes.split(",") if mode.strip()]
    if not mode_list or set(mode_list) - {"target", "exact", "fast"}:
        raise click.BadParameter("modes are target, exact and fast", param_hint="--modes")
    prompts = read_prompts(prompts_path or public_prompts())
    model_arguments = ["--context", str(BENCH_CONTEXT)]
    for flag, value in (("--profile", profile), ("--target", target), ("--draft-model", draft_model),
                        ("--threads", threads)):  # fmt: skip
        if value is not None:
            model_arguments += [flag, str(value)]
    report: dict[str, Any] = {"host": host_description(), "max_tokens": max_tokens, "repeat": repeat}
    with stderr_console.status("starting duetto serve"):
        server = Server(model_arguments)
    try:
        server.post(_chat("Say hello.", 8))  # one untimed reply: warm caches
        if "overhead" in chosen:
            rows = measure_overhead(server, model_arguments, prompts, mode_list, max_tokens, repeat)
            report["overhead"] = {
                "rows": rows,
                "ratio_geomean": {
                    mode: geometric_mean([r["ratio"] for r in rows if r["mode"] == mode]) for mode in mode_list
                },  # fmt: skip
                "ratio_min": min(row["ratio"] or 0 for row in rows),
            }
        if "prediction" in chosen:
            rows = measure_prediction(model_arguments, prompts, max_tokens, repeat)
            report["prediction"] = {
                "rows": rows,
                "speedup_geomean": geometric_mean([row["speedup"] for row in rows]),
                "speedup_over_target_geomean": geometric_mean([row["speedup_over_target"] for row in rows]),
                "all_identical": all(row["identical"] for row in rows),
            }
        if "clients" in chosen:
            report["clients"] = measure_clients(server, prompts, clients, rounds, min(max_tokens, 48))
    finally:
        server.stop()
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    host = report["host"]
    stdout_console.print(f"host: {host['cpu']}, {host['cores']} cores, flags {' '.join(host['flags'])}")
    if "overhead" in report:
        part = report["overhead"]
        stdout_console.print(
            f"overhead: served/ask tok/s geometric mean {part['ratio_geomean']}, lowest {part['ratio_min']}"
        )
    if "prediction" in report:
        part = report["prediction"]
        stdout_console.print(
            f"prediction: {part['speedup_geomean']}x geometric mean over the same request without one "
            f"({part['speedup_over_target_geomean']}x over the target alone); "
            f"outputs identical: {part['all_identical']}"
        )
    if "clients" in report:
        part = report["clients"]
        stdout_console.print(
            f"clients: {part['clients']} at once x {part['rounds']} rounds: {part['answered']} answered, "
            f"{part['refused']} refused (503), {part['lost']} lost; server RSS by round {part['server_rss_mib']} MiB"
        )
