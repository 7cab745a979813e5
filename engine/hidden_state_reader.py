"""Final hidden states of a text without paying for the vocabulary projection.

Reading a document needs every token's final hidden state (embeddings, and with the
output matrix, surprisal). llama.cpp only hands those out with ``embeddings`` on, and
then it also multiplies every row by the 152k-word output matrix: for Qwen2.5 0.5B on
2 cores that doubles the cost of reading (measured: 21.1 s against 11.4 s for 2,000
tokens). Here a second llama.cpp context over the same weights (its own small KV cache,
so the decode context is never touched) has an evaluation callback that copies the
``result_norm`` tensor, the normalised output of the last layer that every llama.cpp
model graph names so, and then returns false, which ggml documents as cancelling the
rest of the graph: the output projection is never computed.
"""

from __future__ import annotations

import ctypes

import numpy as np

from duetto.engine.errors import EngineError

HIDDEN_STATE_TENSOR = b"result_norm"


class HiddenStatesUnavailable(EngineError):
    """This model's graph (or this llama.cpp build) offers no hidden-state tensor to read."""


def _ggml_library():
    from llama_cpp import _ggml

    library = _ggml.libggml
    library.ggml_get_name.restype = ctypes.c_char_p
    library.ggml_get_name.argtypes = [ctypes.c_void_p]
    library.ggml_nbytes.restype = ctypes.c_size_t
    library.ggml_nbytes.argtypes = [ctypes.c_void_p]
    library.ggml_backend_tensor_get.restype = None
    library.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return library


class HiddenStateReader:
    def __init__(self, llama_cpp, model, base_parameters, *, context_length: int, batch_size: int, hidden_size: int):
        try:
            self._ggml = _ggml_library()
        except (ImportError, AttributeError, OSError) as error:
            raise HiddenStatesUnavailable(f"llama-cpp-python exposes no ggml tensor access: {error}") from error
        self._llama_cpp = llama_cpp
        self.hidden_size = hidden_size
        self.context_length = context_length
        self._batch_size = batch_size
        self._captured: list[np.ndarray] = []
        self._raised: BaseException | None = None
        """What the callback caught (a Ctrl-C lands there): ctypes would print and drop it."""
        # The ctypes callback object must outlive the context that calls it.
        self._callback = llama_cpp.llama_cpp.ggml_backend_sched_eval_callback(self._observe)
        parameters = llama_cpp.llama_context_params.from_buffer_copy(base_parameters)
        parameters.n_ctx = context_length
        parameters.n_batch = batch_size
        parameters.n_ubatch = batch_size
        parameters.n_seq_max = 1
        parameters.embeddings = False
        parameters.cb_eval = self._callback
        parameters.cb_eval_user_data = None
        self._context = llama_cpp.llama_init_from_model(model, parameters)
        if not self._context:
            raise HiddenStatesUnavailable(f"llama.cpp could not create a {context_length}-token reading context")
        self._memory = llama_cpp.llama_get_memory(self._context)
        self._batch = llama_cpp.llama_batch_init(batch_size, 0, 1)

    def read(self, tokens: list[int]) -> np.ndarray:
        """(len(tokens) x hidden size) float32 hidden states, ``tokens`` read from an empty cache."""
        if len(tokens) > self.context_length:
            raise EngineError(
                f"cannot read {len(tokens)} tokens at once; the reading context holds {self.context_length}"
            )
        llama_cpp = self._llama_cpp
        llama_cpp.llama_memory_clear(self._memory, True)
        self._captured = []
        parts: list[np.ndarray] = []
        try:
            for start in range(0, len(tokens), self._batch_size):
                chunk = tokens[start : start + self._batch_size]
                batch = self._batch
                batch.n_tokens = len(chunk)
                for index, token in enumerate(chunk):
                    batch.token[index] = token
                    batch.pos[index] = start + index
                    batch.n_seq_id[index] = 1
                    batch.seq_id[index][0] = 0
                    batch.logits[index] = True  # every row is an output row, so result_norm keeps them all
                status = llama_cpp.llama_decode(self._context, batch)
                if self._raised is not None:
                    raised, self._raised = self._raised, None
                    raise raised
                if status != 0:
                    raise HiddenStatesUnavailable(f"llama_decode failed with status {status} while reading")
                if len(self._captured) != 1 or self._captured[0].shape[0] != len(chunk):
                    raise HiddenStatesUnavailable(
                        "llama.cpp's graph for this model has no result_norm tensor with one row per token"
                    )
                parts.append(self._captured.pop())
        finally:
            llama_cpp.llama_memory_clear(self._memory, True)
        if not parts:
            return np.empty((0, self.hidden_size), dtype=np.float32)
        return np.concatenate(parts)

    def _observe(self, tensor, ask: bool, _user_data) -> bool:
        try:
            return self._take(tensor, ask)
        except BaseException as error:  # noqa: BLE001 - re-raised by read() once llama_decode returns
            self._raised = error
            return False

    def _take(self, tensor, ask: bool) -> bool:
        if self._ggml.ggml_get_name(tensor) != HIDDEN_STATE_TENSOR:
            return not ask  # not wanted; (never passed with ask false)
        if ask:
            return True
        size = self._ggml.ggml_nbytes(tensor)
        if size % (4 * self.hidden_size):
            return True  # not the float32 rows expected: let the graph finish, read() reports it
        rows = np.empty((size // (4 * self.hidden_size), self.hidden_size), dtype=np.float32)
        self._ggml.ggml_backend_tensor_get(tensor, rows.ctypes.data, 0, size)
        self._captured.append(rows)
        return False  # cancel the rest of the graph: the output projection

    def close(self) -> None:
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._context is not None:
            self._llama_cpp.llama_free(self._context)
            self._context = None
