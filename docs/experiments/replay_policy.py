"""Replay exact mode's drafting decisions against the target's known replies and measured batch
costs, without running the target: for trying a drafting policy on many prompts in seconds.

An experiment, not a benchmark: a policy chosen here is then measured with `duetto bench`.

Greedy exact mode writes the target's own reply, so once that reply is known, what a draft would
have had accepted is known too (the longest common prefix with the reply's next tokens), and what
each verification costs is a host's batch-cost table (`duetto bench --batch-costs --json`). The
replay runs the real decoder loop (engine/decoder.py's ``_Run.exact_steps``: the real drafters,
cost model and draft policy) with only the target's evaluation replaced by that table, on a
simulated clock. Drafting time is the drafters' real Python time.

Usage:
  python docs/experiments/replay_policy.py references TARGET.gguf OUT.json PROMPTS.jsonl ...
      (the target's greedy replies, 160 tokens, once per machine)
  python docs/experiments/replay_policy.py replay TARGET.gguf REFERENCES.json COSTS.json
      [--repeat 3] [--cold] [--scale-batches F]
      (each prompt's speedup over the target alone; --scale-batches F makes every batch of more
      than one token cost F times as much, for a host whose batches are cheaper or dearer)
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
from pathlib import Path

import numpy as np

from duetto.engine.cost_model import CostModel
from duetto.engine.decoder import Decoder, DecodeSettings, _Run
from duetto.engine.model_session import ModelSession

MAX_TOKENS = 160
SESSIONS: dict[Path, ModelSession] = {}


def make_references(target_path: Path, out: Path, prompt_files: list[Path]) -> None:
    target = ModelSession(target_path, threads=2, context_length=4096)
    decoder = Decoder(target)
    references = []
    for prompt_file in prompt_files:
        for line in prompt_file.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            prompt = target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
            target.truncate(0)
            reply = decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=MAX_TOKENS))
            tokens = list(reply.token_ids)
            ended = reply.stats.finish_reason == "stop"
            references.append({"id": entry["id"], "kind": entry["kind"], "prompt": prompt, "reply": tokens,
                               "ended": ended})  # fmt: skip
            print(entry["id"], len(tokens), flush=True)
    out.write_text(json.dumps(references))


class Clock:
    """The simulated time: what the replayed verifications have cost so far."""

    now = 0.0


class ReplayRun(_Run):
    """exact_steps with the target's evaluation replaced by the reference reply and a cost table."""

    def __init__(self, decoder, prompt, settings, reply, end_token, costs, clock):
        super().__init__(decoder, prompt, settings, None, None, None)
        self.reference = reply
        self.end_token = end_token
        self.costs = costs
        self.clock = clock
        self.show = False

    def show_text(self, tokens) -> str:
        return b"".join(self.target.token_bytes(token) for token in tokens).decode(errors="replace")

    def verify(self, draft, judge):
        position = self.reply_tokens
        expected = self.reference[position:]
        accepted = 0
        while (
            accepted < len(draft.tokens) and accepted < len(expected) and draft.tokens[accepted] == expected[accepted]
        ):
            accepted += 1
        next_token = expected[accepted] if accepted < len(expected) else self.end_token
        seconds = self.costs(len(draft.tokens) + 1)
        self.clock.now += seconds
        self.cost_model.observe_verify(len(draft.tokens) + 1, seconds)
        self.spent_seconds += seconds
        self.target_calls += 1
        self.drafted += len(draft.tokens)
        self.accepted += accepted
        if self.show and draft.tokens:
            print(
                f"    {self.reply_tokens:4} {draft.key!s:24} k={len(draft.tokens):2} accepted={accepted:2} "
                f"cost {seconds / self.costs(1):.1f} steps "
                f"{self.show_text(draft.tokens[:accepted])!r} "
                f"| drafted {self.show_text(draft.tokens[accepted : accepted + 3])!r}"
                f" | target {self.show_text([next_token])!r}"
            )
        return accepted, next_token, np.zeros((accepted + 1, 2), dtype=np.float32), seconds


def cost_table(path: Path, scale: float):
    rows = json.loads(path.read_text())["batch_costs"]
    points = {row["batch"]: row["milliseconds"] / 1000 for row in rows}
    points = {size: (seconds if size == 1 else seconds * scale) for size, seconds in points.items()}
    sizes = sorted(points)

    def cost(size: int) -> float:
        if size in points:
            return points[size]
        low = max(s for s in sizes if s < size)
        high = min((s for s in sizes if s > size), default=None)
        if high is None:
            return points[low] * size / low
        return points[low] + (points[high] - points[low]) * (size - low) / (high - low)

    return cost


def replay(
    target_path: Path,
    references_path: Path,
    costs_path: Path,
    repeat: int,
    cold: bool,
    scale: float,
    show: list[str],
    quiet: bool = False,
):
    target = SESSIONS.get(target_path) or ModelSession(target_path, threads=2, context_length=4096)
    SESSIONS[target_path] = target
    decoder = Decoder(target)
    references = json.loads(references_path.read_text())
    costs = cost_table(costs_path, scale)
    clock = Clock()
    speedups: dict[str, list[float]] = {entry["id"]: [] for entry in references}
    details: dict[str, str] = {}
    end_token = next(t for t in range(target.llm.n_vocab()) if target.is_end_of_generation(t))
    for _ in range(repeat):
        for entry in references:
            if cold:
                decoder.cost_model = CostModel()
            reply = entry["reply"]
            # the target alone: one plain step per token after the first, as bench's rate counts
            for _ in range(3):
                decoder.cost_model.observe_verify(1, costs(1))
            # a reply that stopped ends where the target wrote its end token (verify gives it past
            # the reference); one cut at the token limit ends there
            settings = DecodeSettings(mode="exact", max_tokens=len(reply) + (1 if entry["ended"] else 0))
            run = ReplayRun(decoder, entry["prompt"], settings, reply, end_token, costs, clock)
            run.show = entry["id"] in show
            if run.show:
                print(entry["id"])
            for drafter in decoder.drafters.values():
                drafter.begin(run.prompt, (), ())
            started = clock.now
            steps = run.exact_steps(reply[0], None)
            for _ in steps:
                if run.finish_reason is not None:
                    break
            drafting = run.spent_seconds - (clock.now - started)  # the drafters' real Python time
            decode_seconds = clock.now - started + drafting
            alone = (run.reply_tokens - 1) * costs(1)
            speedups[entry["id"]].append(alone / decode_seconds if decode_seconds else 1.0)
            details[entry["id"]] = f"{run.accepted}/{run.drafted} in {run.target_calls} calls"
    if quiet:
        return {entry["id"]: statistics.median(speedups[entry["id"]]) for entry in references}
    by_kind: dict[str, list[float]] = {}
    for entry in references:
        median = statistics.median(speedups[entry["id"]])
        by_kind.setdefault(entry["kind"], []).append(median)
        runs = " ".join(f"{value:.3f}" for value in speedups[entry["id"]])
        print(f"{entry['id']:32} {median:.3f}x  ({runs})  last {details[entry['id']]}")
    for kind, values in by_kind.items():
        print(f"{kind:10} geomean {float(np.exp(np.mean(np.log(values)))):.3f}x  min {min(values):.3f}x")
    every = [statistics.median(values) for values in speedups.values()]
    print(f"all        geomean {float(np.exp(np.mean(np.log(every)))):.3f}x  min {min(every):.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    refs = sub.add_parser("references")
    refs.add_argument("target", type=Path)
    refs.add_argument("out", type=Path)
    refs.add_argument("prompts", type=Path, nargs="+")
    play = sub.add_parser("replay")
    play.add_argument("target", type=Path)
    play.add_argument("references", type=Path)
    play.add_argument("costs", type=Path)
    play.add_argument("--repeat", type=int, default=3)
    play.add_argument("--cold", action="store_true")
    play.add_argument("--scale-batches", type=float, default=1.0)
    play.add_argument("--show", nargs="*", default=[], help="prompt ids whose drafts to print")
    play.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="MODULE.NAME=VALUE",
        help="override an engine constant, e.g. draft_policy.LOSS_ALLOWANCE_SHARE=0.02",
    )
    args = parser.parse_args()
    for assignment in getattr(args, "set", []):
        name, value = assignment.split("=", 1)
        module_name, constant = name.rsplit(".", 1)
        module = importlib.import_module(f"duetto.engine.{module_name}")
        assert hasattr(module, constant), name
        setattr(module, constant, type(getattr(module, constant))(eval(value)))
    if args.command == "references":
        make_references(args.target, args.out, args.prompts)
    else:
        replay(args.target, args.references, args.costs, args.repeat, args.cold, args.scale_batches, args.show)


if __name__ == "__main__":
    main()
