"""Experiment (not part of duetto): does a user's plugin apply where the assistant writes their text?

A plugin is trained on the user's text as plain text. In a chat, the same text would be written
by the assistant, after the chat template and a request: different hidden states, which the
gate may not recognise. This scores the user's held-out entries teacher-forced both ways, as
plain text (after a line break) and as the assistant's reply to a request in the chat template,
and prints the target's perplexity without and with the plugin, and the gate's mean opening,
for each framing. Usage:

    .venv/bin/python docs/experiments/plugins/chat_framing.py TARGET.gguf PLUGIN_DIR [HELD_OUT.txt] [--threads 2]

PLUGIN_DIR is a user's directory holding side-plugin.npz ($DUETTO_HOME/users/NAME); the held-out
text defaults to the plugin benchmark's diary (app/bench/plugin_texts/user-heldout.txt), split
into entries at blank lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from duetto.app.core.chat import SYSTEM_PROMPT
from duetto.engine.model_session import ModelSession
from duetto.engine.plugin_files import load_side_plugin

ROOT = Path(__file__).resolve().parents[3]
HELD_OUT = ROOT / "app" / "bench" / "plugin_texts" / "user-heldout.txt"
REQUEST = "Write my next log entry, in my usual style."


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    peak = logits.max(axis=1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("plugin_dir", type=Path)
    parser.add_argument("held_out", type=Path, nargs="?", default=HELD_OUT)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    plugin = load_side_plugin(arguments.plugin_dir)
    session = ModelSession(arguments.target, context_length=4096, threads=arguments.threads)
    entries = [entry.strip() for entry in arguments.held_out.read_text(encoding="utf-8").split("\n\n") if entry.strip()]
    prefixes = {
        "plain text": session.tokenize("\n"),
        "assistant's reply": session.chat_prompt_tokens(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": REQUEST}]
        ),
    }
    for framing, prefix in prefixes.items():
        base = personalised = 0.0
        gates, count = [], 0
        for entry in entries:
            body = session.tokenize(entry)
            session.truncate(0)
            logits, hidden = session.evaluate_with_hidden_states(
                prefix + body, range(len(prefix) - 1, len(prefix) + len(body) - 1)
            )
            rows, following = np.arange(len(body)), np.asarray(body)
            base += log_softmax(logits)[rows, following].sum()
            personalised += log_softmax(plugin.apply(logits, hidden))[rows, following].sum()
            gates.append(plugin.gate(hidden))
            count += len(body)
        before, after = np.exp(-base / count), np.exp(-personalised / count)
        print(
            f"{framing:>18}: perplexity {before:.2f} -> {after:.2f} ({after / before - 1:+.1%}), "
            f"mean gate {np.concatenate(gates).mean():.3f}, {count} tokens in {len(entries)} entries"
        )


if __name__ == "__main__":
    main()
