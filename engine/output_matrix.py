"""Rows of a model's output matrix, read from its GGUF file and dequantized with numpy.

A plugin's training needs the target's logits on the plugin's vocabulary at positions of generic
text that was read once, for a vocabulary chosen later (each user's own). Those logits are the
final hidden state times the output matrix's rows for those tokens; reading a few thousand rows
from the file costs seconds, where reading the text again costs a minute or more.

The logits computed so differ from llama.cpp's by its activation quantization (measured on the
1.5B target's Q6_K matrix: 0.05 on average, 0.47 at most, for logits of magnitude about 4): close
enough for a regulariser, which compares a distribution with itself moved, not for scoring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from duetto.engine.errors import EngineError

OUTPUT_TENSORS = ("output.weight", "token_embd.weight")
"""The output matrix, or the token embeddings where the model ties the two (no output.weight)."""


def output_rows(model_path: Path, tokens: np.ndarray) -> np.ndarray:
    """(len(tokens) x hidden size) float32 rows of the output matrix, for ascending token ids."""
    import gguf

    try:
        reader = gguf.GGUFReader(model_path)
    except (OSError, ValueError) as error:
        raise EngineError(f"cannot read the output matrix of {model_path.name}: {error}") from error
    tensors = {tensor.name: tensor for tensor in reader.tensors if tensor.name in OUTPUT_TENSORS}
    tensor = tensors.get(OUTPUT_TENSORS[0]) or tensors.get(OUTPUT_TENSORS[1])
    if tensor is None:
        raise EngineError(f"{model_path.name} has no output matrix ({' or '.join(OUTPUT_TENSORS)})")
    rows = np.asarray(tensor.data[np.asarray(tokens, dtype=np.int64)])
    return np.ascontiguousarray(gguf.quants.dequantize(rows, tensor.tensor_type), dtype=np.float32).reshape(
        len(tokens), -1
    )
