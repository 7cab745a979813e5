"""One GGUF model loaded on llama.cpp, with its KV cache under duetto's control.

llama-cpp-python's ``Llama`` loads the model and context, tokenizes and renders the
chat template; evaluation goes through the low-level API instead, because
draft-verify needs what ``Llama.eval`` does not give: a batch whose logits are
read only on the rows that matter (``logits_all`` would allocate n_ctx x n_vocab
floats, 2.3 GiB for Qwen at 4k context) and cutting the KV cache back to any
length after a rejected draft.

Invariant: ``self.tokens`` is exactly what the KV cache of sequence 0 holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from duetto.engine.errors import EngineError, InvalidModelFile
from duetto.engine.hidden_state_reader import HiddenStateReader

MEMORY_SHARE_FOR_CONTEXT = 8
"""A context chosen automatically may give its KV cache up to this fraction (1/8) of the
machine's memory: a 32k context of the default 1.5B target takes 0.9 GB, fine on an 8 GB laptop."""
SMALLEST_AUTOMATIC_CONTEXT = 4096
BATCH_SIZE = 512
READING_BATCH_SIZE = 256
"""read_hidden_states' batch: a chunk fits, and llama.cpp's output buffer, sized for a batch of
full-vocabulary rows even though they are never computed, stays at 156 MB instead of 311."""
PROMPT_PIECE_SECONDS = 0.5
"""A long prompt is read in pieces of about this long, so that a stop request is seen between them."""
FIRST_PROMPT_PIECE = 64
"""Tokens in the first piece, before this host's reading speed is known."""
LLAMA_OWN_CONTEXT = 64
"""llama-cpp-python's Llama makes a context of its own, which duetto never evaluates in."""
SCRATCH_SEQUENCE = 1
"""A second KV sequence, used only inside save_span/append_span and empty otherwise."""


class ChatMessage(TypedDict):
    role: str
    content: str


class ContextFull(EngineError):
    """The conversation does not fit in the model's context window."""


def physical_memory_bytes() -> int:
    """This machine's memory (Linux and macOS both answer these sysconf names)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30  # a laptop's, where the platform will not say


def kv_bytes_per_token(llama_cpp, model) -> int:
    """Bytes the KV cache (16-bit keys and values, as duetto's contexts use) takes per token."""
    layers = int(llama_cpp.llama_model_n_layer(model))
    heads = max(1, int(llama_cpp.llama_model_n_head(model)))
    kv_heads = int(llama_cpp.llama_model_n_head_kv(model)) or heads
    head_size = int(llama_cpp.llama_model_n_embd(model)) // heads
    return 2 * layers * kv_heads * head_size * 2


def affordable_context_length(trained_length: int, bytes_per_token: int, memory_bytes: int | None = None) -> int:
    """The model's trained context, cut (to a multiple of 1,024) to what 1/8 of memory holds, and
    never under 4,096 tokens (duetto's fixed context before it was chosen, even for models trained
    on less: a document answer and a chat turn need that room)."""
    memory = physical_memory_bytes() if memory_bytes is None else memory_bytes
    affordable = memory // MEMORY_SHARE_FOR_CONTEXT // max(1, bytes_per_token) // 1024 * 1024
    return max(SMALLEST_AUTOMATIC_CONTEXT, min(trained_length, affordable))


def default_thread_count() -> int:
    """All cores on small machines; half (roughly the physical cores) on larger ones."""
    logical = os.cpu_count() or 1
    return max(1, logical if logical <= 4 else logical // 2)


class ModelSession:
    def __init__(
        self,
        path: Path,
        *,
        context_length: int | None = None,
        threads: int | None = None,
    ) -> None:
        """``context_length`` None: as long as the model was trained for, as far as memory
        affords (``affordable_context_length``)."""
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        self.path = path
        self.llm = _load_quietly(llama_cpp, path, threads or default_thread_count())
        # duetto's own context: two sequences in one unified KV cache (save_span/append_span and
        # insert_tokens work on a scratch sequence), which llama-cpp-python's Llama only offers
        # with embedding=True, whose 512 sequences cost ~10% of prompt speed (measured).
        if context_length is None:
            context_length = affordable_context_length(
                int(llama_cpp.llama_model_n_ctx_train(self.llm.model)), kv_bytes_per_token(llama_cpp, self.llm.model)
            )
        parameters = llama_cpp.llama_context_params.from_buffer_copy(self.llm.context_params)
        parameters.n_ctx = context_length
        parameters.n_batch = BATCH_SIZE
        parameters.n_ubatch = BATCH_SIZE
        parameters.n_seq_max = SCRATCH_SEQUENCE + 1
        parameters.kv_unified = True
        parameters.embeddings = False
        self._context = llama_cpp.llama_init_from_model(self.llm.model, parameters)
        if not self._context:
            raise EngineError(f"llama.cpp could not create a {context_length}-token context for {path.name}")
        self._memory = llama_cpp.llama_get_memory(self._context)
        self._vocabulary = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.vocabulary_size = self.llm.n_vocab()
        self.context_length = int(llama_cpp.llama_n_ctx(self._context))
        self._batch = llama_cpp.llama_batch_init(BATCH_SIZE, 0, 1)
        self.tokens: list[int] = []
        self._hidden_state_reader: HiddenStateReader | None = None
        template = self.llm.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            eos_text = self.token_text(self.llm.token_eos())
            bos_text = self.token_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos_text, bos_token=bos_text)

    @property
    def llama_context(self):
        """The llama.cpp context evaluation runs in (for adapters and other per-context settings)."""
        return self._context

    def close(self) -> None:
        if self._hidden_state_reader is not None:
            self._hidden_state_reader.close()
            self._hidden_state_reader = None
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._context is not None:
            self._llama_cpp.llama_free(self._context)
            self._context = None
        self.llm.close()

    # --- text ---------------------------------------------------------------------------

    def token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token adds to visible text (special tokens add none)."""
        return self.llm.detokenize([token], special=False)

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def chat_prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The messages through the model's own chat template, ready for the assistant's turn."""
        if self._formatter is None:
            raise InvalidModelFile(f"{self.path}: the model has no chat template in its metadata")
        formatted = self._formatter(messages=list(messages))
        return self._templated_tokens(formatted.prompt)

    def chat_prompt_around(self, messages: Sequence[ChatMessage], marker: str) -> tuple[list[int], list[int]]:
        """Tokens of the templated prompt before and after ``marker`` (which must occur once in
        the messages), so that other tokens can be put in its place."""
        if self._formatter is None:
            raise InvalidModelFile(f"{self.path}: the model has no chat template in its metadata")
        formatted = self._formatter(messages=list(messages))
        before, marker_found, after = formatted.prompt.partition(marker)
        if not marker_found:
            raise ValueError("the marker does not occur in the templated prompt")
        return self._templated_tokens(before), self.tokenize(after, special=True)

    def _templated_tokens(self, text: str) -> list[int]:
        """A templated prompt's tokens, beginning with BOS where the model's vocabulary asks for one
        (the Llama family does, Qwen does not), as llama.cpp's own programs and llama-server read
        it; once, where the template writes it too."""
        tokens = self.tokenize(text, add_bos=True, special=True)  # llama.cpp adds BOS only where asked
        if len(tokens) > 1 and tokens[0] == tokens[1] == self.llm.token_bos():
            del tokens[0]
        return tokens

    def is_end_of_generation(self, token: int) -> bool:
        """EOS, EOT and any other token the vocabulary marks as ending a turn."""
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocabulary, token))

    # --- the KV cache -------------------------------------------------------------------

    def truncate(self, length: int) -> None:
        """Forget every evaluated token from position ``length`` on."""
        if length < len(self.tokens):
            self._llama_cpp.llama_memory_seq_rm(self._memory, 0, length, -1)
            del self.tokens[length:]

    def common_prefix_length(self, tokens: Sequence[int]) -> int:
        limit = min(len(tokens), len(self.tokens))
        index = 0
        while index < limit and self.tokens[index] == tokens[index]:
            index += 1
        return index

    def last_cached_position(self, sequence: int = 0) -> int:
        """The highest position the KV cache holds for ``sequence`` (-1: none), straight from
        llama.cpp: what shows that an edit of the cache kept it in step with ``tokens``."""
        return int(self._llama_cpp.llama_memory_seq_pos_max(self._memory, sequence))

    def remove_span(self, start: int, end: int) -> None:
        """Forget positions [start, end) and move the later ones back to close the gap.

        The later tokens keep KV computed while the removed ones were there (llama.cpp's
        context shift does the same): cheap, and close to what re-evaluation would give.
        """
        if not 0 <= start <= end <= len(self.tokens):
            raise ValueError(f"span {start}..{end} is outside the {len(self.tokens)} evaluated tokens")
        if start == end:
            return
        self._llama_cpp.llama_memory_seq_rm(self._memory, 0, start, end)
        if end < len(self.tokens):
            self._llama_cpp.llama_memory_seq_add(self._memory, 0, end, -1, start - end)
        del self.tokens[start:end]

    def insert_tokens(self, tokens: Sequence[int], at: int) -> None:
        """Evaluate ``tokens`` as if they followed ``self.tokens[:at]`` and insert them there,
        moving the later tokens along (which keep the KV they had)."""
        if not 0 <= at <= len(self.tokens):
            raise ValueError(f"position {at} is outside the {len(self.tokens)} evaluated tokens")
        self._ensure_room(len(tokens))
        if not tokens:
            return
        llama_cpp = self._llama_cpp
        memory = self._memory
        try:
            if at:
                llama_cpp.llama_memory_seq_cp(memory, 0, SCRATCH_SEQUENCE, 0, at)
            for start in range(0, len(tokens), BATCH_SIZE):
                chunk = tokens[start : start + BATCH_SIZE]
                self._decode_on(chunk, (), sequence=SCRATCH_SEQUENCE, start_position=at + start)
            if at < len(self.tokens):
                llama_cpp.llama_memory_seq_add(memory, 0, at, -1, len(tokens))
            llama_cpp.llama_memory_seq_cp(memory, SCRATCH_SEQUENCE, 0, at, at + len(tokens))
        finally:
            llama_cpp.llama_memory_seq_rm(memory, SCRATCH_SEQUENCE, -1, -1)
        self.tokens[at:at] = list(tokens)

    def save_span(self, start: int, end: int) -> bytes:
        """The KV cells of positions [start, end) as bytes, to append later with ``append_span``."""
        if not 0 <= start < end <= len(self.tokens):
            raise ValueError(f"span {start}..{end} is outside the {len(self.tokens)} evaluated tokens")
        llama_cpp = self._llama_cpp
        llama_cpp.llama_memory_seq_cp(self._memory, 0, SCRATCH_SEQUENCE, start, end)
        try:
            size = llama_cpp.llama_state_seq_get_size(self._context, SCRATCH_SEQUENCE)
            buffer = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(self._context, buffer, size, SCRATCH_SEQUENCE)
        finally:
            llama_cpp.llama_memory_seq_rm(self._memory, SCRATCH_SEQUENCE, -1, -1)
        if written != size:
            raise EngineError(f"llama.cpp wrote {written} of {size} bytes of KV state ({self.path.name})")
        return bytes(buffer)

    def append_span(self, state: bytes, tokens: Sequence[int], saved_start: int) -> None:
        """Append ``tokens`` from a ``save_span`` state instead of evaluating them.

        The cells are moved from the positions they were saved at to the end of the cache
        (llama.cpp re-rotates the keys). Tokens appended this way attended to what preceded
        them when they were saved, not to what precedes them now: block attention, exact
        only when both are the same.
        """
        self._ensure_room(len(tokens))
        llama_cpp = self._llama_cpp
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        try:
            read = llama_cpp.llama_state_seq_set_data(self._context, buffer, len(state), SCRATCH_SEQUENCE)
            if read == 0:
                raise EngineError(f"llama.cpp could not load a saved KV state into {self.path.name}")
            if llama_cpp.llama_memory_seq_pos_max(self._memory, SCRATCH_SEQUENCE) != saved_start + len(tokens) - 1:
                raise EngineError("a saved KV state does not match its tokens; it will be recomputed if removed")
            shift = len(self.tokens) - saved_start
            if shift:
                llama_cpp.llama_memory_seq_add(
                    self._memory, SCRATCH_SEQUENCE, saved_start, saved_start + len(tokens), shift
                )
            llama_cpp.llama_memory_seq_cp(self._memory, SCRATCH_SEQUENCE, 0, -1, -1)
        finally:
            llama_cpp.llama_memory_seq_rm(self._memory, SCRATCH_SEQUENCE, -1, -1)
        self.tokens.extend(tokens)

    def evaluate(self, tokens: Sequence[int], logit_rows: Sequence[int] = ()) -> np.ndarray:
        """Append ``tokens`` to the KV cache; returns logits (len(logit_rows) x vocabulary).

        ``logit_rows`` are ascending indexes into ``tokens``; only those rows are computed.
        The result is a view into llama.cpp's output buffer when it can be (no copy of
        rows x 152k floats on the decode path): valid until the next ``evaluate``.
        Raises ContextFull when the tokens do not fit.
        """
        rows = _checked_rows(logit_rows, len(tokens))
        self._ensure_room(len(tokens))
        copies: list[np.ndarray] = []
        last_chunk_rows: list[int] = []
        for start in range(0, len(tokens), BATCH_SIZE):
            chunk = tokens[start : start + BATCH_SIZE]
            chunk_rows = [row - start for row in rows if start <= row < start + len(chunk)]
            if last_chunk_rows:  # an earlier chunk's rows are overwritten by this decode: keep copies
                copies.append(self._output_view(len(last_chunk_rows)).copy())
            self._decode(chunk, chunk_rows)
            last_chunk_rows = chunk_rows
        if not rows:
            return np.empty((0, self.vocabulary_size), dtype=np.float32)
        current = self._output_view(len(last_chunk_rows))
        return np.concatenate([*copies, current]) if copies else current

    def evaluate_prompt(
        self,
        tokens: Sequence[int],
        *,
        should_stop: Callable[[], bool] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray | None:
        """``evaluate(tokens, [last row])[0]``, read in pieces of about PROMPT_PIECE_SECONDS each
        (sized from the speed measured on the piece before: hosts differ several-fold), with
        ``should_stop`` checked and ``on_progress(read, total)`` called between them.

        Returns None when stopped; the pieces read so far stay in the cache (a later prompt with
        the same start reuses them).
        """
        if not tokens:
            raise ValueError("a prompt needs at least one token")
        read = 0
        piece = FIRST_PROMPT_PIECE
        while len(tokens) - read > piece:
            started = time.perf_counter()
            self.evaluate(tokens[read : read + piece], [])
            seconds = time.perf_counter() - started
            read += piece
            if on_progress is not None:
                on_progress(read, len(tokens))
            if should_stop is not None and should_stop():
                return None
            affordable = int(piece * PROMPT_PIECE_SECONDS / max(seconds, 1e-6))
            piece = max(FIRST_PROMPT_PIECE // 2, min(BATCH_SIZE, affordable))
        logits = self.evaluate(tokens[read:], [len(tokens) - read - 1])[0]
        if on_progress is not None:
            on_progress(len(tokens), len(tokens))
        return logits

    def evaluate_with_hidden_states(
        self, tokens: Sequence[int], rows: Sequence[int], *, views: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Append ``tokens``; returns copies of (logits, final hidden states) on ``rows``.

        The hidden state is the last layer's normalised output, the input of the output
        projection: what document memory pools into embeddings and what a user plugin reads.
        llama.cpp computes every row of a batch while embeddings are on, so this costs a full
        output projection per token; the plain decode path keeps them off.

        ``views``: for tokens that fit one batch with consecutive rows, return views into
        llama.cpp's buffers instead of copies, valid until the next evaluation and free to be
        overwritten: plugin training reads 511 x 152k logits per window, and copying them out
        cost ~0.7 s of each ~7 s window on the 1.5B model.
        """
        rows = _checked_rows(rows, len(tokens))
        if views and rows and len(tokens) <= BATCH_SIZE and isinstance(_as_slice(rows), slice):
            self._ensure_room(len(tokens))
            self._llama_cpp.llama_set_embeddings(self._context, True)
            try:
                self._decode(tokens, range(len(tokens)))
            finally:
                self._llama_cpp.llama_set_embeddings(self._context, False)
            selection = _as_slice(rows)
            return self._output_view(len(tokens))[selection], self._hidden_view(len(tokens))[selection]
        self._ensure_room(len(tokens))
        logits_parts: list[np.ndarray] = []
        hidden_parts: list[np.ndarray] = []
        self._llama_cpp.llama_set_embeddings(self._context, True)
        try:
            for start in range(0, len(tokens), BATCH_SIZE):
                chunk = tokens[start : start + BATCH_SIZE]
                chunk_rows = [row - start for row in rows if start <= row < start + len(chunk)]
                self._decode(chunk, range(len(chunk)))
                if chunk_rows:
                    # One copy out of llama.cpp's buffers (a slice when the rows are a run, as they
                    # are for plugin training: fancy indexing then .copy() copied 311 MB twice).
                    selection = _as_slice(chunk_rows)
                    logits_parts.append(self._output_view(len(chunk))[selection].copy())
                    hidden_parts.append(self._hidden_view(len(chunk))[selection].copy())
        finally:
            self._llama_cpp.llama_set_embeddings(self._context, False)
        if not rows:
            return (
                np.empty((0, self.vocabulary_size), dtype=np.float32),
                np.empty((0, self.hidden_size), dtype=np.float32),
            )
        return np.concatenate(logits_parts), np.concatenate(hidden_parts)

    def read_hidden_states(self, tokens: Sequence[int]) -> np.ndarray:
        """Final hidden states of every token of ``tokens``, read from an empty cache.

        Unlike evaluate_with_hidden_states, this skips the output projection (about half
        the cost of reading for a 0.5B model with a 152k vocabulary) and leaves this
        session's KV cache as it was: it runs in a second context (see hidden_state_reader).
        Raises HiddenStatesUnavailable where llama.cpp offers no such tensor.
        """
        if self._hidden_state_reader is None:
            self._hidden_state_reader = HiddenStateReader(
                self._llama_cpp,
                self.llm.model,
                self.llm.context_params,
                context_length=self.context_length,
                batch_size=READING_BATCH_SIZE,
                hidden_size=self.hidden_size,
            )
        return self._hidden_state_reader.read(list(tokens))

    def personalised_logits(self, logits: np.ndarray, hidden: np.ndarray) -> np.ndarray:
        """The logits this session gives for rows whose plain logits and hidden states are these:
        the same (PersonalisedSession's carry its plugin)."""
        return logits

    @property
    def plain(self) -> ModelSession:
        """This session without any user's plugin: itself (PersonalisedSession's is the session it wraps)."""
        return self

    @property
    def hidden_size(self) -> int:
        return int(self._llama_cpp.llama_model_n_embd(self.llm.model))

    def _hidden_view(self, row_count: int) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_embeddings(self._context)
        return np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(row_count, self.hidden_size)
        )

    def _ensure_room(self, count: int) -> None:
        if len(self.tokens) + count > self.context_length:
            raise ContextFull(
                f"the conversation needs {len(self.tokens) + count} tokens but the context holds "
                f"{self.context_length}; start a new conversation or raise --context"
            )

    def _decode(self, chunk: Sequence[int], logit_rows: Sequence[int]) -> None:
        self._decode_on(chunk, logit_rows, sequence=0, start_position=len(self.tokens))
        self.tokens.extend(chunk)

    def _decode_on(
        self, chunk: Sequence[int], logit_rows: Sequence[int], *, sequence: int, start_position: int
    ) -> None:
        batch = self._batch
        batch.n_tokens = len(chunk)
        wanted = set(logit_rows)
        for index, token in enumerate(chunk):
            batch.token[index] = token
            batch.pos[index] = start_position + index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = sequence
            batch.logits[index] = index in wanted
        status = self._llama_cpp.llama_decode(self._context, batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status} ({self.path.name})")

    def _output_view(self, row_count: int) -> np.ndarray:
        """The last decode's output rows (in batch order), as a view of llama.cpp's buffer."""
        pointer = self._llama_cpp.llama_get_logits(self._context)
        return np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(row_count, self.vocabulary_size)
        )


def _load_quietly(llama_cpp, path: Path, threads: int):
    """llama-cpp-python's Llama for ``path``, its load-time chatter kept off the terminal.

    ``Llama(verbose=False)`` silences loading by pointing file descriptors 1 and 2 at /dev/null
    for the whole process. A chat app drawing its screen on descriptor 2 from another thread
    then loses whatever it draws meanwhile: the screen stayed stale through a fold (the small
    model is loaded on the first one) until a key press made Textual redraw it. So the model is
    loaded verbose, with Python's sys.stdout and sys.stderr (where llama-cpp-python prints, its
    llama.cpp log callback included) caught in a buffer instead, and quiet afterwards.
    """
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=LLAMA_OWN_CONTEXT,
                n_batch=LLAMA_OWN_CONTEXT,
                n_gpu_layers=-1 if llama_cpp.llama_supports_gpu_offload() else 0,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=True,
            )
    except ValueError as error:
        said = [line for line in chatter.getvalue().splitlines() if "error" in line.lower()]
        detail = f" ({said[-1].strip()})" if said else ""
        raise InvalidModelFile(f"{path}: llama.cpp cannot load this model: {error}{detail}") from error
    finally:
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # what verbose=False sets
    llm.verbose = False
    return llm


def _as_slice(rows: list[int]) -> slice | list[int]:
    """``rows`` (ascending, distinct) as a slice when they are consecutive."""
    return slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else rows


def _checked_rows(rows: Sequence[int], token_count: int) -> list[int]:
    """``rows`` as a list, if they are ascending, distinct indexes into ``token_count`` tokens."""
    checked = list(rows)
    if checked != sorted(set(checked)) or (checked and not 0 <= checked[0] <= checked[-1] < token_count):
        raise ValueError("rows must be ascending, distinct indexes into the tokens")
    return checked
