"""Experiment (not part of duetto): what keeping a document chunk's reading costs, and what it saves.

Once a user's plugin learns from their documents (``plugin train --docs``), the target keeps its
reading of each chunk it reads whole for questions (``docs prepare``, a question's first use of a
chunk, or the training itself), so that training never reads it again. This times, on the same
diary text cut into chunks as ``docs add`` cuts it, interleaved and repeated:

- ``state``: the chunks read whole behind the answer prompt's head, states saved (what questions
  need; ``docs prepare`` without a plugin that learns from documents);
- ``state+reading``: the same with each chunk's reading kept (the output projection on its rows);
- ``plain read``: the plugin training's own read of the same text (512-token windows).

Reading a document twice, for questions and for training, costs ``state + plain read``; once,
``state+reading``. Usage:

    .venv/bin/python docs/experiments/plugins/document_reading_cost.py TARGET.gguf [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from duetto.app.core.questions import PREPARE_CONTEXT_LENGTH, _answer_prompt_around_blocks, _memory_block
from duetto.engine.chunking import split_into_chunks
from duetto.engine.memory_prompt import MemoryBlock, save_block_states
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_training import read_generic

ROOT = Path(__file__).resolve().parents[3]
DIARY = ROOT / "app" / "bench" / "plugin_texts" / "user-train.txt"
CHARACTERS = 8000  # about 2,000 tokens: 13 chunks


class _Chunk:  # what _memory_block reads of a stored chunk
    def __init__(self, position: int, text: str) -> None:
        self.id, self.position, self.text, self.compressed_text = position, position, text, ""


class _Discard:
    def load(self, block: MemoryBlock, prefix_sha256: str) -> bytes | None:
        return None

    def save(self, block: MemoryBlock, prefix_sha256: str, state: bytes) -> None:
        pass


class _KeepAll:
    def __init__(self) -> None:
        self.tokens = 0

    def wants(self, block: MemoryBlock) -> bool:
        return True

    def receive(self, block: MemoryBlock, reading) -> None:
        self.tokens += len(reading)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    session = ModelSession(arguments.target, context_length=PREPARE_CONTEXT_LENGTH, threads=arguments.threads)
    text = DIARY.read_text(encoding="utf-8")[:CHARACTERS]
    chunks = [
        _Chunk(number, chunk.text)
        for number, chunk in enumerate(split_into_chunks(text, lambda part: len(session.tokenize(part))))
    ]
    blocks = [_memory_block(session, "diary", chunk, "full") for chunk in chunks]
    prefix, _ = _answer_prompt_around_blocks(session, "")
    tokens = session.tokenize(text)
    times: dict[str, list[float]] = {"state": [], "state+reading": [], "plain read": []}
    kept = _KeepAll()

    def run(kind: str) -> None:
        session.truncate(0)
        began = time.perf_counter()
        if kind == "plain read":
            read_generic(session, tokens, window=512)
        else:
            save_block_states(session, prefix, blocks, _Discard(), readings=kept if kind == "state+reading" else None)
        times[kind].append(time.perf_counter() - began)

    kinds = list(times)
    for repeat in range(arguments.repeats + 1):
        for kind in kinds if repeat % 2 else reversed(kinds):
            run(kind)
        if not repeat:  # the first round warms up
            for measured in times.values():
                measured.clear()
    block_tokens = sum(len(block.tokens) for block in blocks)
    median = {kind: statistics.median(measured) for kind, measured in times.items()}
    print(f"{len(blocks)} chunks, {block_tokens} block tokens; the text alone {len(tokens)} tokens")
    for kind, seconds in median.items():
        print(f"{kind:>14} {seconds:8.2f} s")
    print(
        f"keeping the reading: x{median['state+reading'] / median['state']:.2f} the state alone; "
        f"read once {median['state+reading']:.1f} s against twice {median['state'] + median['plain read']:.1f} s"
    )


if __name__ == "__main__":
    main()
