"""Print every draft exact mode verifies: its acceptance key, length, how much was accepted, and
the text around the first rejected token. For seeing why a prompt does or does not pay.

Usage: python docs/experiments/trace_drafts.py TARGET.gguf PROMPTS.jsonl [ID ...]
(one decoder for all prompts, as in `duetto bench`, so what the cost model learns carries over)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from duetto.engine.decoder import Decoder, DecodeSettings, _Run
from duetto.engine.model_session import ModelSession


def main() -> None:
    target = ModelSession(Path(sys.argv[1]), threads=2)
    entries = [json.loads(line) for line in Path(sys.argv[2]).read_text().splitlines() if line.strip()]
    entries = [entry for entry in entries if entry["id"] in sys.argv[3:]] or entries
    decoder = Decoder(target)

    def text(tokens: list[int]) -> str:
        return b"".join(target.token_bytes(token) for token in tokens).decode(errors="replace")

    judge = _Run.judge

    def traced_judge(run: _Run, draft, logits):
        accepted, next_token = judge(run, draft, logits)
        if draft.tokens:
            print(
                f"  {draft.acceptance_key:24} k={len(draft.tokens):2} accepted={accepted:2} "
                f"{text(draft.tokens[:accepted])!r} | drafted {text(draft.tokens[accepted : accepted + 3])!r}"
                f" | target {text([next_token])!r}"
            )
        return accepted, next_token

    _Run.judge = traced_judge
    for entry in entries:
        prompt = target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        print(entry["id"])
        target.truncate(0)
        _, alone = decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=200))
        target.truncate(0)
        _, exact = decoder.reply(prompt, DecodeSettings(mode="exact", max_tokens=200))
        print(
            f"  target {alone.tokens_per_second} tok/s, exact {exact.tokens_per_second} tok/s "
            f"({exact.tokens_per_second / alone.tokens_per_second:.2f}x), accepted {exact.accepted}/{exact.drafted}"
        )


if __name__ == "__main__":
    main()
