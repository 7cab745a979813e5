"""Experiment (not part of duetto): what keeping a chat message's reading costs the reply.

Once a user's plugin has learnt from their chats, the target's prompt reading keeps its reading of
each new message they type (``KeepReading``), so that training never reads it again: the
message's rows get the output projection a plain prompt read skips, the reading is computed from
their logits, and it is written under the user's directory. This times a chat turn both ways on
the same prompts, interleaved: an earlier exchange already in the KV cache, a new message of N
tokens of the benchmark diary, and the reply's first token (what the user waits for). Usage:

    .venv/bin/python docs/experiments/plugins/chat_reading_cost.py TARGET.gguf [--threads 2] [--repeats 5]

Prints one row per message length: the median turn without and with the reading kept, the extra
time per message token, the reading's file size, and the largest hidden-state value (the file
keeps them in 16 bits, which hold up to 65,504).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from duetto.engine.decoder import Decoder, DecodeSettings, KeepReading
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_files import CHAT_READINGS_DIR, save_reading

ROOT = Path(__file__).resolve().parents[3]
DIARY = ROOT / "app" / "bench" / "plugin_texts" / "user-train.txt"
LENGTHS = (20, 60, 200, 500)
EARLIER = [
    {
        "role": "system",
        "content": "You are duetto, a concise and helpful assistant running offline on the user's computer.",
    },
    {"role": "user", "content": "Keep my work log for me. I will paste entries as I write them."},
    {"role": "assistant", "content": "Of course. Paste each entry and I will keep it with the others."},
]


def message_of(session: ModelSession, tokens: list[int], length: int) -> str:
    return session.llm.detokenize(tokens[:length]).decode("utf-8", errors="ignore").strip()


def span_of(prompt: list[int], message: list[int]) -> tuple[int, int]:
    for start in range(len(prompt) - len(message), -1, -1):
        if prompt[start : start + len(message)] == message:
            return start, start + len(message)
    raise SystemExit("the message's tokens do not occur in the templated prompt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    session = ModelSession(arguments.target, context_length=2048, threads=arguments.threads)
    decoder = Decoder(session)
    diary = session.tokenize(DIARY.read_text(encoding="utf-8"))
    settings = DecodeSettings(mode="target", max_tokens=1)
    directory = Path(tempfile.mkdtemp(prefix="chat-reading-cost-"))
    print(
        f"{'tokens':>6} {'plain s':>8} {'kept s':>8} {'ratio':>6} {'extra ms/token':>15} {'file KB':>8} {'max |h|':>8}"
    )
    for length in LENGTHS:
        text = message_of(session, diary[1000:], length)
        prompt = session.chat_prompt_tokens([*EARLIER, {"role": "user", "content": text}])
        start, end = span_of(prompt, session.tokenize(text))
        times: dict[bool, list[float]] = {False: [], True: []}
        kept: list = []

        def save(reading, kept: list = kept) -> None:
            save_reading(directory, CHAT_READINGS_DIR, 1, "digest", arguments.target.name, reading)
            kept.append(reading)

        for repeat in range(arguments.repeats + 1):
            for keep in (False, True) if repeat % 2 else (True, False):
                session.truncate(0)
                session.evaluate_prompt(prompt[: start - 4])  # the earlier exchange, in the cache
                began = time.perf_counter()
                decoder.reply(prompt, settings, keep_reading=KeepReading(start, end, save) if keep else None)
                if repeat:  # the first round warms up
                    times[keep].append(time.perf_counter() - began)
        plain, with_reading = statistics.median(times[False]), statistics.median(times[True])
        size = (directory / CHAT_READINGS_DIR / "1.npz").stat().st_size
        largest = float(np.abs(kept[-1].hidden).max())
        print(
            f"{end - start:>6} {plain:>8.3f} {with_reading:>8.3f} {with_reading / plain:>6.3f} "
            f"{1000 * (with_reading - plain) / (end - start):>15.2f} {size / 1024:>8.0f} {largest:>8.1f}"
        )


if __name__ == "__main__":
    main()
