"""llama.cpp's own speculative decoding, run beside duetto's in ``duetto bench --peers``.

The peers are llama.cpp's example programs (``llama-speculative-simple`` and ``llama-lookup``),
built from the llama.cpp inside the installed llama-cpp-python's sdist with the same options as
its wheel (app/bench/llama_tools.py), so that both sides run the same kernels on the same GGUF
files. Each peer run is a fresh process on the same prompt, token for token (duetto renders the
chat template and writes the text the tools read), greedy, with the same length and threads.

Each peer mode is compared with llama.cpp's own target alone: ``llama-speculative-simple`` with an
n-gram longer than any prompt, so that nothing is ever drafted (it prints ``n_drafted = 0``) and
the loop and its timing are the very ones the drafting modes use; its ``--spec-type none``
refuses to start. The tools time decoding after the prompt ("decoded N tokens in S seconds"),
as duetto's ``tokens_per_second`` does.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from duetto.app.bench.llama_tools import built_tools
from duetto.engine.model_session import ModelSession

PEER_MODES = ("target", "ngram-simple", "ngram-mod", "draft-simple", "lookup")
"""llama.cpp's modes, its target alone first (the reference of the others)."""
PEER_PREFIX = "llama.cpp "
"""How a peer mode is named in bench results: ``llama.cpp ngram-simple``."""
NOTHING_MATCHES = "1024"
"""An n-gram length no prompt reaches: ngram-simple then never drafts (the target alone)."""
RUN_SECONDS = 900
LOST_LOG_ATTEMPTS = 3

_DECODED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s")
_DRAFTED = re.compile(r"n_drafted\s*=\s*(\d+)")
_ACCEPTED = re.compile(r"n_accept\s*=\s*(\d+)")


class PeerError(Exception):
    """A peer tool failed or printed no timing: one line, with its last output."""


class LostTiming(PeerError):
    """A run ended well but its log lacks the timing lines."""


@dataclass(frozen=True)
class PeerRun:
    mode: str
    tokens: int
    seconds: float
    tokens_per_second: float
    drafted: int
    accepted: int
    text: str | None
    """The reply as the tool printed it; None where its echo of the prompt is not the prompt (then
    it did not read the prompt it was given)."""


def parse_run(mode: str, prompt_text: str, stdout: str, stderr: str) -> PeerRun:
    """A peer run's numbers from its output (the tools log timings to stderr, text to stdout)."""
    output = stderr + "\n" + stdout
    decoded = _DECODED.search(output)
    if decoded is None:
        tail = " | ".join(line for line in (stderr or stdout).strip().splitlines()[-3:])
        raise LostTiming(f"llama.cpp {mode} printed no timing: {tail}")
    drafted = _DRAFTED.search(output)
    accepted = _ACCEPTED.search(output)
    _, echoed, reply = stdout.partition(prompt_text)  # the tools echo the prompt, then write the reply
    return PeerRun(
        mode=mode,
        tokens=int(decoded.group(1)),
        seconds=float(decoded.group(2)),
        tokens_per_second=float(decoded.group(3)),
        drafted=int(drafted.group(1)) if drafted else 0,
        accepted=int(accepted.group(1)) if accepted else 0,
        text=reply.strip("\n") if echoed else None,
    )


def peer_prompt_text(session: ModelSession, prompt_tokens: list[int]) -> tuple[str, bool]:
    """The text the tools read to get ``prompt_tokens`` back (without the BOS they add themselves),
    and whether they do get them back: they tokenize it as this does, BOS and special tokens."""
    body = prompt_tokens[1:] if prompt_tokens and prompt_tokens[0] == session.llm.token_bos() else prompt_tokens
    text = session.llm.detokenize(body, special=True).decode("utf-8", errors="replace")
    return text, session.tokenize(text, add_bos=True, special=True) == list(prompt_tokens)


class LlamaPeers:
    """Runs llama.cpp's tools on one pair of models; ``built_tools`` builds them on first use."""

    def __init__(self, target: Path, draft: Path | None, *, threads: int, context_length: int, max_tokens: int) -> None:
        self.target = target
        self.draft = draft
        self.threads = threads
        self.context_length = context_length
        self.max_tokens = max_tokens
        self.tools = built_tools(("llama-speculative-simple", "llama-lookup"))
        self._work = tempfile.TemporaryDirectory(prefix="duetto-peers-")
        self.work = Path(self._work.name)
        """Where the prompt files are written (removed by ``close``)."""

    def close(self) -> None:
        self._work.cleanup()

    def modes(self, wanted: list[str]) -> list[str]:
        """``wanted`` in PEER_MODES order, the target alone included; draft-simple needs a draft."""
        chosen = [mode for mode in PEER_MODES if mode == "target" or mode in wanted]
        return [mode for mode in chosen if mode != "draft-simple" or self.draft is not None]

    def command(self, mode: str, prompt_file: Path) -> list[str]:
        common = ["-m", str(self.target), "-f", str(prompt_file), "-n", str(self.max_tokens), "-t", str(self.threads),
                  "-c", str(self.context_length), "--temp", "0", "--top-k", "1", "--seed", "1"]  # fmt: skip
        if mode == "lookup":
            return [str(self.tools["llama-lookup"]), *common]
        speculative = {
            "target": ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", NOTHING_MATCHES],
            "ngram-simple": ["--spec-type", "ngram-simple"],
            "ngram-mod": ["--spec-type", "ngram-mod"],
            "draft-simple": ["--spec-type", "draft-simple", "-md", str(self.draft)],
        }[mode]
        return [str(self.tools["llama-speculative-simple"]), *common, *speculative]

    def run(self, mode: str, prompt_id: str, prompt_text: str) -> PeerRun:
        """One run; again, up to LOST_LOG_ATTEMPTS times, where the tool's log lost its timing lines
        (its logger writes from a thread that can be cut off at exit: ggml-org/llama.cpp#22142)."""
        for attempt in range(1, LOST_LOG_ATTEMPTS + 1):
            try:
                return self._run_once(mode, prompt_id, prompt_text)
            except LostTiming:
                if attempt == LOST_LOG_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _run_once(self, mode: str, prompt_id: str, prompt_text: str) -> PeerRun:
        prompt_file = self.work / f"{prompt_id}.txt"
        # `-f` drops the file's last newline, and a chat prompt ends with one (the assistant's
        # turn begins on a new line): one more keeps the prompt whole.
        prompt_file.write_text(prompt_text + "\n", encoding="utf-8")
        try:
            result = subprocess.run(
                self.command(mode, prompt_file), capture_output=True, text=True, errors="replace",
                timeout=RUN_SECONDS, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise PeerError(f"llama.cpp {mode} took over {RUN_SECONDS} s on {prompt_id}") from None
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
            raise PeerError(f"llama.cpp {mode} failed on {prompt_id} (exit {result.returncode}): {tail}")
        run = parse_run(mode, prompt_text, result.stdout, result.stderr)
        if mode == "target" and run.drafted:
            raise PeerError(f"llama.cpp's target alone drafted {run.drafted} tokens on {prompt_id}")
        return run
