"""Do batched and single-token evaluation give the target the same logits, and what would it cost?

Greedy exact decoding verifies drafts in batches while target-only decoding evaluates one token
at a time; they agree bit for bit only if llama.cpp's kernels compute a row the same way whatever
the batch size. This measures that under llama.cpp's switches (weight repacking, flash attention,
GGML_CPU_TILED_MM_FORCE) together with the single-token and 16-token costs.
Usage: python docs/experiments/batch_invariance.py MODEL.gguf   (docs/experiments/NOTEBOOK.md has the results)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = [  # (weight repacking, flash attention, forced tiled K-quant products)
    ("on", "off", "0"),  # llama-cpp-python's defaults, duetto's configuration
    ("on", "on", "0"),
    ("off", "off", "0"),
    ("off", "on", "0"),
    ("off", "on", "1"),
]
PROMPT = "Explain what Python's global interpreter lock is and when it matters."


def measure(model: Path, repack: bool, flash_attention: bool) -> str:
    import llama_cpp
    import llama_cpp.llama_cpp as low_level

    default_model_params = low_level.llama_model_default_params

    def model_params():
        params = default_model_params()
        params.use_extra_bufts = repack
        return params

    default_init = low_level.llama_init_from_model

    def init(llama_model, params):
        on, off = low_level.LLAMA_FLASH_ATTN_TYPE_ENABLED, low_level.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.flash_attn_type = on if flash_attention else off
        return default_init(llama_model, params)

    low_level.llama_model_default_params = model_params
    low_level.llama_init_from_model = llama_cpp.llama_init_from_model = init
    from duetto.engine.model_session import ModelSession

    session = ModelSession(model, threads=2)
    prompt = session.chat_prompt_tokens([{"role": "user", "content": PROMPT}])
    logits = np.array(session.evaluate(prompt, [len(prompt) - 1])[0])
    reply, single, single_seconds = [], [], []
    for _ in range(48):
        reply.append(int(np.argmax(logits)))
        started = time.perf_counter()
        logits = np.array(session.evaluate([reply[-1]], [0])[0])
        single_seconds.append(time.perf_counter() - started)
        single.append(logits)
    cells = []
    for size in (2, 4, 8, 16):
        session.truncate(len(prompt))
        batched, batch_seconds = [], []
        for start in range(0, len(reply), size):
            chunk = reply[start : start + size]
            started = time.perf_counter()
            batched.extend(np.array(session.evaluate(chunk, list(range(len(chunk))))))
            batch_seconds.append(time.perf_counter() - started)
        largest_logit = max(float(np.abs(a - b).max()) for a, b in zip(single, batched, strict=True))
        margin_shifts = []
        for a, b in zip(single, batched, strict=True):
            second, first = np.argsort(a)[-2:]
            margin_shifts.append(abs((a[first] - a[second]) - (b[first] - b[second])))
        cells.append(f"{largest_logit:.3g} / {max(margin_shifts):.3g}")
        if size == 16:
            cells.append(f"{1000 * float(np.median(batch_seconds)):.0f}")
    history_shifts = []  # the reply's start written in one batch, the next token then evaluated alone
    for length in range(1, len(reply), 3):
        session.truncate(len(prompt))
        session.evaluate(reply[:length])
        alone = np.array(session.evaluate([reply[length]], [0])[0])
        second, first = np.argsort(single[length])[-2:]
        shift = (single[length][first] - single[length][second]) - (alone[first] - alone[second])
        history_shifts.append(abs(shift))
    cells.append(f"{max(history_shifts):.3g}")
    return " | ".join([f"{1000 * float(np.median(single_seconds)):.1f}", *cells])


def main() -> None:
    model = Path(sys.argv[1])
    if len(sys.argv) > 2:  # a child: one configuration, its environment already set
        print(measure(model, sys.argv[2] == "on", sys.argv[3] == "on"))
        return
    columns = ["repacking", "flash attention", "tiled forced", "1 token ms", "batch 2", "batch 4", "batch 8"]
    print("| " + " | ".join([*columns, "batch 16", "16 tokens ms", "history batched"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for repack, flash_attention, forced in CONFIGS:
        environment = {**os.environ, "GGML_CPU_TILED_MM_FORCE": forced}
        child = [sys.executable, __file__, str(model), repack, flash_attention]
        row = subprocess.run(child, env=environment, capture_output=True, text=True, check=True).stdout.strip()
        print(f"| {repack} | {flash_attention} | {'yes' if forced == '1' else 'no'} | {row} |", flush=True)


if __name__ == "__main__":
    main()
