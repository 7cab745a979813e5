"""Print every draft exact mode verifies: its acceptance key, length, how much was accepted, and
the text around the first rejected token. For seeing why a prompt does or does not pay.

Usage: python docs/experiments/trace_drafts.py TARGET.gguf PROMPTS.jsonl [ID ...]
(one decoder for all prompts, as in `duetto bench`, so what the cost model learns carries over)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.engine.model_session import ModelSession
from duetto.engine.reply_stream import StepTrace


def main() -> None:
    target = ModelSession(Path(sys.argv[1]), threads=2)
    entries = [json.loads(line) for line in Path(sys.argv[2]).read_text().splitlines() if line.strip()]
    entries = [entry for entry in entries if entry["id"] in sys.argv[3:]] or entries
    decoder = Decoder(target)

    def text(tokens) -> str:
        return b"".join(target.token_bytes(token) for token in tokens).decode(errors="replace")

    def show(step: StepTrace) -> None:
        if step.drafted:
            accepted = step.accepted
            print(
                f"  {step.key!s:24} k={len(step.drafted):2} accepted={accepted:2} "
                f"{text(step.drafted[:accepted])!r} | drafted {text(step.drafted[accepted : accepted + 3])!r}"
                f" | target {text([step.next_token])!r}"
            )

    for entry in entries:
        prompt = target.chat_prompt_tokens([{"role": "user", "content": entry["prompt"]}])
        print(entry["id"])
        target.truncate(0)
        alone = decoder.reply(prompt, DecodeSettings(mode="target", max_tokens=200)).stats
        target.truncate(0)
        exact = None
        for item in decoder.generate(prompt, DecodeSettings(mode="exact", max_tokens=200), on_step=show):
            exact = item
        print(
            f"  target {alone.tokens_per_second} tok/s, exact {exact.tokens_per_second} tok/s "
            f"({exact.tokens_per_second / alone.tokens_per_second:.2f}x), accepted {exact.accepted}/{exact.drafted}"
        )


if __name__ == "__main__":
    main()
