"""One GGUF model loaded through llama-cpp-python, talking in chat turns.

This is the target-only path: the model decodes alone, token by token. It owns
the model's KV state; llama-cpp-python keeps the tokens it has evaluated and
reuses their KV entries when the next prompt starts with them, so the turns of a
conversation are not re-read from the start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from duetto.engine.errors import EngineError, InvalidModelFile
from duetto.engine.stats import FinishReason, ReplyStats
from duetto.engine.text_stream import TextStream

DEFAULT_CONTEXT_LENGTH = 4096


class ChatMessage(TypedDict):
    role: str
    content: str


class ContextFull(EngineError):
    """The prompt does not fit in the model's context window."""


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()


def default_thread_count() -> int:
    """Physical cores are what matrix-vector products scale with; leave one for the UI on big machines."""
    logical = os.cpu_count() or 1
    return max(1, logical if logical <= 4 else logical // 2)


class ChatModel:
    def __init__(self, path: Path, *, context_length: int = DEFAULT_CONTEXT_LENGTH, threads: int | None = None):
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = path
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_length,
                n_gpu_layers=-1 if llama_cpp.llama_supports_gpu_offload() else 0,
                n_threads=threads or default_thread_count(),
                n_batch=512,
                logits_all=False,
                verbose=False,
            )
        except ValueError as error:
            raise InvalidModelFile(f"{path}: llama.cpp cannot load this model: {error}") from error
        self._vocabulary = llama_cpp.llama_model_get_vocab(self.llm.model)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise InvalidModelFile(f"{path}: the model has no chat template in its metadata")
        eos_text = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", errors="replace")
        bos_text = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", errors="replace")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos_text, bos_token=bos_text)

    def is_end_of_generation(self, token: int) -> bool:
        """EOS, EOT and any other token the model's vocabulary marks as ending a turn."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocabulary, token))

    @property
    def context_length(self) -> int:
        return self.llm.n_ctx()

    def chat_prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The messages through the model's own chat template, ready to generate the assistant's turn."""
        formatted = self._formatter(messages=list(messages))
        return self.llm.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)

    def stream(
        self,
        prompt_tokens: list[int],
        settings: GenerationSettings,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[str | ReplyStats]:
        """Yield text deltas, then one ReplyStats; ``should_cancel`` is checked between tokens.

        ``tokens_per_second`` is the decoding rate after the first token, so that it
        does not mix prompt processing (reported as ``ttft_seconds``) into speed.
        """
        if len(prompt_tokens) >= self.context_length:
            raise ContextFull(
                f"the prompt has {len(prompt_tokens)} tokens but the context holds {self.context_length}; "
                "shorten it or start a new conversation"
            )
        if settings.seed is not None:
            self.llm.set_seed(settings.seed)
        text = TextStream(settings.stop)
        started = time.perf_counter()
        first_token_at: float | None = None
        generated = 0
        finish_reason: FinishReason = "length"
        room = self.context_length - len(prompt_tokens)
        token_stream = self.llm.generate(
            prompt_tokens,
            top_k=settings.top_k if settings.temperature > 0 else 1,
            top_p=settings.top_p,
            temp=settings.temperature,
            repeat_penalty=1.0,
        )
        for token in token_stream:
            if first_token_at is None:
                first_token_at = time.perf_counter()
            if self.is_end_of_generation(token):
                finish_reason = "stop"
                break
            generated += 1
            delta = text.push(self.llm.detokenize([token], prev_tokens=None))
            if delta:
                yield delta
            if text.stopped:
                finish_reason = "stop"
                break
            if should_cancel is not None and should_cancel():
                finish_reason = "cancelled"
                break
            if generated >= settings.max_tokens:
                break
            if generated >= room - 1:
                finish_reason = "context"
                break
        tail = text.flush()
        if tail:
            yield tail
        seconds = time.perf_counter() - started
        ttft = (first_token_at or time.perf_counter()) - started
        decode_seconds = seconds - ttft
        yield ReplyStats(
            prompt_tokens=len(prompt_tokens),
            tokens=generated,
            seconds=round(seconds, 4),
            tokens_per_second=round((generated - 1) / decode_seconds, 2)
            if generated > 1 and decode_seconds > 0
            else 0.0,
            ttft_seconds=round(ttft, 4),
            drafted=0,
            accepted=0,
            target_calls=generated,
            mode="target",
            drafter="none",
            finish_reason=finish_reason,
        )
