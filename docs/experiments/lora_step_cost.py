"""What would one epoch of LoRA training on the target cost on this machine?

A LoRA adapter's gradients need a backward pass through every layer below the highest adapted
one; its own parameters are few, so the cost of a training step is the forward and backward pass
of the frozen model itself. This times exactly that for 512-token windows of a text: the GGUF
target dequantized to float32 by transformers, every weight frozen, gradients taken with
respect to the input embeddings only (a lower bound on any LoRA step), on N threads.

Not a duetto dependency: run it in a separate virtual environment, e.g.

    python -m venv /tmp/lora-env && /tmp/lora-env/bin/pip install torch==2.13.0 transformers gguf accelerate
    /tmp/lora-env/bin/python docs/experiments/lora_step_cost.py TARGET.gguf TEXT.txt [WINDOWS] [THREADS]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

WINDOW = 512


def main() -> None:
    # This experiment's own dependencies (a separate venv, docs/PLUGINS.md), not duetto's.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(sys.argv[1])
    text = Path(sys.argv[2]).read_text(encoding="utf-8")
    windows = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    torch.set_num_threads(threads)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    load_seconds = time.perf_counter() - started
    model.train()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    tokens = tokenizer(text, return_tensors="pt").input_ids[0]
    timings = []
    for index in range(windows):
        window = tokens[index * WINDOW : (index + 1) * WINDOW].unsqueeze(0)
        embeddings = model.get_input_embeddings()(window).detach().requires_grad_(True)
        started = time.perf_counter()
        loss = model(inputs_embeds=embeddings, labels=window).loss
        forward = time.perf_counter() - started
        loss.backward()
        timings.append({"forward_seconds": round(forward, 2), "step_seconds": round(time.perf_counter() - started, 2)})
        print(json.dumps(timings[-1]), file=sys.stderr, flush=True)
    step = sorted(row["step_seconds"] for row in timings)[len(timings) // 2]
    print(
        json.dumps(
            {
                "model": gguf.name,
                "threads": threads,
                "load_seconds": round(load_seconds, 1),
                "window_tokens": WINDOW,
                "windows": timings,
                "median_step_seconds": step,
                "seconds_per_epoch_of_20k_tokens": round(step * 20_000 / WINDOW),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
