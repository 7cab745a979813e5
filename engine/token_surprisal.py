"""Each token's surprisal from final hidden states, with the output matrix read from the GGUF.

Compression only ranks the words of a chunk by surprisal, so the softmax normaliser can
be taken over part of the vocabulary: the 16,384 lowest ids (Qwen's byte-pair merges
come in frequency order, so these are the common pieces) plus the chunk's own tokens.
Measured on Northanger Abbey with Qwen2.5 0.5B: surprisals correlate 0.98 with the exact
ones, the compressed text agrees 96% with what exact surprisals keep (the same as with
65,536 rows), and scoring 1,600 tokens costs 0.37 s of numpy instead of the 10 s llama.cpp
spends multiplying every row by all 151,936 rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from duetto.engine.errors import EngineError
from duetto.engine.gguf_header import GgufFormatError, read_header

COMMON_ROWS = 16_384
PLAIN_OUTPUT_ARCHITECTURES = {"qwen2", "qwen3", "llama"}
"""Architectures whose llama.cpp graph makes logits as output matrix x result_norm and nothing
more (others add a bias, a scale or a soft cap, and are read with llama.cpp's own logits)."""


class ProjectionUnavailable(EngineError):
    """The model's output matrix cannot be read or does not make plain logits."""


class TokenSurprisal:
    def __init__(self, model_path: Path) -> None:
        from gguf import GGML_QUANT_SIZES

        try:
            header = read_header(model_path)
        except (OSError, GgufFormatError) as error:
            raise ProjectionUnavailable(f"{model_path.name}: cannot read its tensors: {error}") from error
        architecture = header.metadata.get("general.architecture")
        if architecture not in PLAIN_OUTPUT_ARCHITECTURES or header.metadata.get("split.count", 1) > 1:
            raise ProjectionUnavailable(f"{model_path.name}: logits of a {architecture} model are not read this way")
        tensors = {tensor.name: tensor for tensor in header.tensors}
        if "output.bias" in tensors or "output.scale" in tensors:
            raise ProjectionUnavailable(f"{model_path.name}: its logits have a bias or a scale")
        tensor = tensors.get("output.weight") or tensors.get("token_embd.weight")  # tied embeddings
        if tensor is None or len(tensor.shape) != 2:
            raise ProjectionUnavailable(f"{model_path.name}: no output matrix")
        block_size, type_size = GGML_QUANT_SIZES[tensor.tensor_type]
        hidden_size, vocabulary_size = tensor.shape
        row_bytes = hidden_size * type_size // block_size
        # Rows of quantized bytes, mapped rather than read: only the rows used are paged in.
        self._rows = np.memmap(
            model_path, dtype=np.uint8, mode="r", offset=tensor.data_offset, shape=(vocabulary_size, row_bytes)
        )
        self._quantization = tensor.tensor_type
        try:
            self._common = self._dequantized(np.arange(min(COMMON_ROWS, len(self._rows))))
        except (NotImplementedError, ValueError) as error:
            raise ProjectionUnavailable(
                f"{model_path.name}: gguf cannot dequantize {tensor.tensor_type.name}"
            ) from error
        self.hidden_size = self._common.shape[1]

    def surprisals(self, predicting: np.ndarray, next_tokens: list[int]) -> np.ndarray:
        """-log p(next_tokens[i]) from hidden state ``predicting[i]`` (float64, nats)."""
        ids = np.asarray(next_tokens, dtype=np.int64)
        extra = np.unique(ids[ids >= len(self._common)])
        logits = predicting @ self._common.T
        if len(extra):
            logits = np.concatenate([logits, predicting @ self._dequantized(extra).T], axis=1)
        # Each scored token's column: its own row among the common ones, else its place in extra.
        columns = np.where(ids < len(self._common), ids, len(self._common) + np.searchsorted(extra, ids))
        own_logits = logits[np.arange(len(ids)), columns]
        peak = logits.max(axis=1)
        normaliser = np.log(np.exp(logits - peak[:, None]).sum(axis=1)) + peak
        return (normaliser - own_logits).astype(np.float64)

    def _dequantized(self, ids: np.ndarray) -> np.ndarray:
        from gguf import quants

        return np.ascontiguousarray(quants.dequantize(self._rows[ids], self._quantization), dtype=np.float32)
