"""Drafters propose the next tokens; the decoder verifies them with the target.

The shape follows llama.cpp's ``common/speculative``: a drafter is told the prompt
once (``begin``), then asked for up to n tokens continuing the committed text
(``draft``). Verification and KV rollback of the target live in the decoder; a
drafter only keeps its own state in step with the committed text.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from duetto.engine.model_session import ModelSession
from duetto.engine.sampling import SamplingSettings, distribution, softmax

LOOKUP_NGRAMS = (2, 1)  # matches are found through the last two tokens, else the last one, then extended
LOOKUP_MAX_MATCH = 64
LOOKUP_CANDIDATES = 32
LOOKUP_MATCH_BUCKETS = (1, 2, 4, 8, 16)


@dataclass
class Draft:
    tokens: list[int] = field(default_factory=list)
    # For sampled verification: each token's draft distribution (token ids, probabilities); None when
    # the proposal was deterministic.
    distributions: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)
    # Which acceptance statistics this draft belongs to (e.g. "lookup:8" for a match of 8-15 tokens).
    acceptance_key: str = ""
    seconds: float = 0.0


class LookupDrafter:
    """Copies what followed the longest earlier match of the text's last tokens (prompt included).

    No model: edits and quotes repeat long runs of the prompt, and code repeats itself,
    so the continuation of an earlier occurrence is often exactly right.
    """

    name = "lookup"

    def __init__(self) -> None:
        self._positions: dict[tuple[int, ...], list[int]] = defaultdict(list)
        self._indexed = 0

    def begin(self, prompt: list[int]) -> None:
        """Forget the last generation and index ``prompt``."""
        self._positions.clear()
        self._indexed = 0
        self._index(prompt)

    def _index(self, history: list[int]) -> None:
        """Record, for each n-gram, the positions just after its occurrences (appends only)."""
        for end in range(self._indexed + 1, len(history) + 1):
            for size in LOOKUP_NGRAMS:
                if end >= size:
                    self._positions[tuple(history[end - size : end])].append(end)
        self._indexed = max(self._indexed, len(history))

    def find(self, history: list[int], max_tokens: int) -> tuple[list[int], str]:
        """(proposed continuation, its acceptance key); ([], "") when there is none.

        The key sorts proposals by how much evidence backs them, which predicts acceptance:
        how long the match is, and whether the matched tokens occur once before or several
        times (a match on "." or " the" is a guess; on a rare word it is usually a copy).
        """
        self._index(history)
        length = len(history)
        if not length or max_tokens <= 0:
            return [], ""
        for size in LOOKUP_NGRAMS:
            if length < size:
                continue
            candidates = self._positions.get(tuple(history[-size:]), [])
            earlier = len(candidates) - (1 if candidates and candidates[-1] >= length else 0)
            best_end, best_match = -1, 0
            for end in reversed(candidates[-LOOKUP_CANDIDATES - 1 :]):
                if end >= length:
                    continue  # the suffix itself
                match = size
                while (
                    match < LOOKUP_MAX_MATCH
                    and end - match - 1 >= 0
                    and history[end - match - 1] == history[-match - 1]
                ):
                    match += 1
                if match > best_match:
                    best_end, best_match = end, match
            if best_end >= 0:
                return history[best_end : best_end + max_tokens], self.acceptance_key(best_match, earlier == 1)
        return [], ""

    @staticmethod
    def acceptance_key(match_length: int, unique: bool) -> str:
        bucket = max(bucket for bucket in LOOKUP_MATCH_BUCKETS if bucket <= max(match_length, LOOKUP_MATCH_BUCKETS[0]))
        return f"lookup:{bucket}:{'unique' if unique else 'ambiguous'}"

    def draft(self, history: list[int], max_tokens: int) -> Draft:
        started = time.perf_counter()
        tokens, key = self.find(history, max_tokens)
        return Draft(
            tokens=tokens,
            distributions=[None] * len(tokens),
            acceptance_key=key,
            seconds=time.perf_counter() - started,
        )


class ModelDrafter:
    """The small GGUF model writes greedily (or samples, for sampled verification).

    ``keep_going(probability_all_accepted, drafted_so_far)`` decides after each token
    whether drafting one more pays; the decoder passes the cost model's judgement.
    """

    name = "model"

    def __init__(self, session: ModelSession) -> None:
        self.session = session

    def begin(self, prompt: list[int]) -> None:
        pass  # the KV cache is brought in step lazily, reusing whatever prefix it shares

    def next_logits(self, history: list[int]) -> np.ndarray:
        """Bring the KV cache in step with ``history`` and return the logits that follow it."""
        session = self.session
        common = session.common_prefix_length(history)
        if common == len(history):
            common -= 1  # the last token must be evaluated again for its logits
        session.truncate(common)
        pending = history[common:]
        return session.evaluate(pending, [len(pending) - 1])[0]

    def draft(
        self,
        history: list[int],
        max_tokens: int,
        *,
        sampling: SamplingSettings,
        rng: np.random.Generator,
        keep_going: Callable[[float, int], bool] | None = None,
        min_confidence: float = 0.0,
    ) -> Draft:
        started = time.perf_counter()
        draft = Draft(acceptance_key=self.name)
        if max_tokens <= 0:
            return draft
        logits = self.next_logits(history)
        probability_all_accepted = 1.0
        while True:
            probabilities = softmax(logits)
            if sampling.greedy:
                token = int(np.argmax(logits))
                token_probability = float(probabilities[token])
                draft.distributions.append(None)
            else:
                candidates, candidate_probabilities = distribution(logits, sampling)
                token = int(rng.choice(candidates, p=candidate_probabilities))
                token_probability = float(probabilities[token])
                draft.distributions.append((candidates, candidate_probabilities))
            confidence = float(probabilities.max())
            if confidence < min_confidence:
                draft.distributions.pop()
                break
            draft.tokens.append(token)
            probability_all_accepted *= token_probability
            if len(draft.tokens) >= max_tokens or self.session.is_end_of_generation(token):
                break
            if keep_going is not None and not keep_going(probability_all_accepted, len(draft.tokens)):
                break
            logits = self.session.evaluate([token], [0])[0]
        draft.seconds = time.perf_counter() - started
        return draft
