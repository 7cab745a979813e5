"""The small model reading a document once: per chunk, a memory embedding and compressed text.

One pass of the small model per chunk gives both: its final hidden states, averaged,
are the chunk's embedding (what a question is matched against), and the same hidden
states times the output matrix give each token's surprisal, which decides what the
compressed text keeps. llama.cpp is asked for the hidden states only and the surprisal
is computed over part of the vocabulary (token_surprisal): twice as fast as having
llama.cpp project every row onto all 152k words. Models where that is not possible are
read the slow way, with llama.cpp's logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from duetto.engine.chunking import split_into_chunks
from duetto.engine.compression import DEFAULT_KEEP_RATIO, compress
from duetto.engine.hidden_state_reader import HiddenStatesUnavailable
from duetto.engine.model_session import ModelSession
from duetto.engine.token_surprisal import ProjectionUnavailable, TokenSurprisal

COMPRESSION_CHUNK_TOKENS = 400
LEAD_TEXT = "\n"
"""Evaluated before every chunk so that its first token has a prediction to be scored by."""


@dataclass(frozen=True)
class ChunkReading:
    embedding: np.ndarray
    """Unit-length float32 mean of the small model's final hidden states over the chunk."""
    compressed_text: str
    compressed_tokens: int
    tokens: int


class DocumentReader:
    def __init__(
        self, session: ModelSession, keep_ratio: float = DEFAULT_KEEP_RATIO, *, without_projection: bool = True
    ) -> None:
        self.session = session
        self.keep_ratio = keep_ratio
        self._lead = session.tokenize(LEAD_TEXT)
        self._surprisal: TokenSurprisal | None = None
        self.reads_without_projection = without_projection
        """Reads hidden states alone and scores tokens in numpy (faster); False when asked to, or
        once this model turned out to need llama.cpp's own logits."""

    def count_tokens(self, text: str) -> int:
        return len(self.session.tokenize(text))

    def read(self, text: str) -> ChunkReading:
        tokens = self.session.tokenize(text)
        if not tokens:
            raise ValueError("cannot read an empty chunk")
        hidden, log_probabilities = self._evaluate(tokens)
        surprisals = [-value for value in log_probabilities]
        pieces = [self.session.token_bytes(token) for token in tokens]
        if b"".join(pieces) != text.encode("utf-8"):
            # A tokenizer whose pieces do not spell the text (e.g. an added leading space)
            # cannot be aligned word by word: keep the chunk whole rather than guess.
            compressed, kept = text, len(tokens)
        else:
            compressed, kept = compress(pieces, surprisals, self.keep_ratio)
        return ChunkReading(_unit(hidden.mean(axis=0)), compressed, kept, len(tokens))

    def compress_text(self, text: str) -> str:
        """Compressed text of any length, read in chunks that fit the reader's context."""
        pieces = split_into_chunks(text, self.count_tokens, COMPRESSION_CHUNK_TOKENS)
        return "\n".join(self.read(piece.text).compressed_text for piece in pieces)

    def embed(self, text: str) -> np.ndarray:
        """A question's embedding, comparable with the chunks' embeddings."""
        tokens = self.session.tokenize(text) or self._lead
        if self.reads_without_projection:
            try:
                hidden = self.session.read_hidden_states(self._lead + tokens)
                return _unit(hidden[len(self._lead) :].mean(axis=0))
            except HiddenStatesUnavailable:
                self.reads_without_projection = False
        hidden, _ = self._evaluate_with_logits(tokens)
        return _unit(hidden.mean(axis=0))

    def _evaluate(self, tokens: list[int]) -> tuple[np.ndarray, list[float]]:
        """Hidden states of ``tokens`` and the log-probability the model gave each of them."""
        if self.reads_without_projection:
            try:
                return self._evaluate_without_projection(tokens)
            except (HiddenStatesUnavailable, ProjectionUnavailable):
                self.reads_without_projection = False
        return self._evaluate_with_logits(tokens)

    def _evaluate_without_projection(self, tokens: list[int]) -> tuple[np.ndarray, list[float]]:
        if self._surprisal is None:
            self._surprisal = TokenSurprisal(self.session.path)
        lead = len(self._lead)
        hidden = self.session.read_hidden_states(self._lead + tokens)
        predicting = hidden[lead - 1 : lead - 1 + len(tokens)]  # row i predicts token i of the chunk
        surprisals = self._surprisal.surprisals(predicting, tokens)
        return hidden[lead:], list(-surprisals)

    def _evaluate_with_logits(self, tokens: list[int]) -> tuple[np.ndarray, list[float]]:
        session = self.session
        session.truncate(0)
        evaluated = self._lead + tokens
        rows = range(len(self._lead) - 1, len(evaluated))
        logits, hidden = session.evaluate_with_hidden_states(evaluated, rows)
        session.truncate(0)
        predicting = logits[:-1]  # row i predicts token i of the chunk
        peak = predicting.max(axis=1, keepdims=True)
        log_normaliser = np.log(np.exp(predicting - peak).sum(axis=1)) + peak[:, 0]
        chosen = predicting[np.arange(len(tokens)), tokens]
        return hidden[1:], list((chosen - log_normaliser).astype(float))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)
