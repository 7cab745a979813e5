"""Would a LoRA adapter, trained inside the model, reach the plugin issue's 15% perplexity drop?

Trains a LoRA (rank 16 on every attention and MLP projection) on the user's text for one epoch
of 512-token windows, and scores perplexity on held-out text in the same style and on generic
prose before and after, all in one float32 copy of the GGUF target (dequantized by
transformers), so base and adapter are compared on equal terms. Slow on a CPU by design: it
measures what the side plugin's design gives up (docs/PLUGINS.md), it is not a duetto feature.

Run in a separate virtual environment (not duetto's dependencies):

    python -m venv /tmp/lora-env && /tmp/lora-env/bin/pip install torch==2.13.0 transformers gguf accelerate peft
    /tmp/lora-env/bin/python docs/experiments/lora_quality.py TARGET.gguf TRAIN.txt HELDOUT.txt GENERIC.txt
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch, transformers and peft are imported where used: they are this experiment's own
# dependencies (a separate venv, docs/PLUGINS.md), not duetto's, and CI imports every script.
WINDOW = 512
RANK = 16
LEARNING_RATE = 5e-4


def windows(tokenizer, path: Path) -> list[torch.Tensor]:
    tokens = tokenizer(path.read_text(encoding="utf-8"), return_tensors="pt").input_ids[0]
    return [tokens[start : start + WINDOW].unsqueeze(0) for start in range(0, len(tokens) - 1, WINDOW)]


def perplexity(model, parts: list[torch.Tensor]) -> float:
    import torch

    with torch.no_grad():
        return _perplexity(model, parts)


def _perplexity(model, parts: list[torch.Tensor]) -> float:
    model.eval()
    total, count = 0.0, 0
    for window in parts:
        if window.shape[1] < 2:
            continue
        loss = model(input_ids=window, labels=window).loss
        total += float(loss) * (window.shape[1] - 1)
        count += window.shape[1] - 1
    return math.exp(total / count)


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, train, heldout, generic = (Path(argument) for argument in sys.argv[1:5])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    train_parts, heldout_parts, generic_parts = (windows(tokenizer, path) for path in (train, heldout, generic))
    report = {"train_tokens": sum(part.shape[1] for part in train_parts)}
    report["heldout_base"] = perplexity(model, heldout_parts)
    report["generic_base"] = perplexity(model, generic_parts)
    print(json.dumps(report), file=sys.stderr, flush=True)
    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=projections))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    started = time.perf_counter()
    model.train()
    for number, window in enumerate(train_parts, start=1):
        loss = model(input_ids=window, labels=window).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"step {number}/{len(train_parts)} loss {float(loss):.3f}", file=sys.stderr, flush=True)
    report["training_seconds"] = round(time.perf_counter() - started)
    report["heldout_lora"] = perplexity(model, heldout_parts)
    report["generic_lora"] = perplexity(model, generic_parts)
    report["heldout_change"] = round(report["heldout_lora"] / report["heldout_base"] - 1, 4)
    report["generic_change"] = round(report["generic_lora"] / report["generic_base"] - 1, 4)
    report["adapter_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
