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
from duetto.engine.text_lookup import TextLookup

LOOKUP_NGRAMS = (2, 1)  # matches are found through the last two tokens, else the last one, then extended
LOOKUP_MAX_MATCH = 64
LOOKUP_CANDIDATES = 32
LOOKUP_MATCH_BUCKETS = (1, 2, 4, 8, 16)
TEXT_MATCH_BUCKETS = (12, 48)  # characters of the reply's end found in the prompt's text
CHARS_PER_DRAFT_TOKEN = 6  # text taken from the source per token wanted (tokens average ~4 characters)
TURN_BOUNDARY = b"\x00"  # stands for a control token in the prompt's text


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
    so the continuation of an earlier occurrence is often exactly right. Through the session
    whose tokens these are, it also matches on text (``text_lookup``), which survives the small
    changes a reply makes while quoting; the decoder's cost model chooses between the two.
    """

    name = "lookup"

    def __init__(self, session: ModelSession) -> None:
        self._positions: dict[tuple[int, ...], list[int]] = defaultdict(list)
        self._indexed = 0
        self._session = session
        self._text = TextLookup()
        self._prompt: list[int] = []
        self._text_ready = False
        self._reply_bytes = bytearray()
        self._reply_tokens = 0
        self._control: dict[int, bool] = {}  # token -> whether it is a control token (no text)

    def begin(self, prompt: list[int]) -> None:
        """Forget the last generation and index ``prompt``."""
        self._positions.clear()
        self._indexed = 0
        self._index(prompt)
        self._prompt = prompt
        self._text_ready = False  # the prompt's text is read on the first text lookup, if any
        self._reply_bytes.clear()
        self._reply_tokens = 0

    def candidates(self, history: list[int], max_tokens: int) -> list[tuple[list[int], str]]:
        """Every proposal for continuing ``history``: (tokens, acceptance key), token match first."""
        tokens, key = self.find(history, max_tokens)
        text_tokens, text_key = self.find_text(history, max_tokens)
        if not text_tokens:
            return [(tokens, key)] if tokens else []
        if tokens[: len(text_tokens)] != text_tokens[: len(tokens)] and self._text.relays_out:
            return [(text_tokens, text_key)]  # they disagree where the reply lays out lines its own way
        return [(tokens, key), (text_tokens, text_key)] if tokens else [(text_tokens, text_key)]

    def find_text(self, history: list[int], max_tokens: int) -> tuple[list[int], str]:
        """The prompt's text after the place the reply's end quotes, tokenized; ([], "") if none."""
        if max_tokens <= 0:
            return [], ""
        if not self._text_ready:
            # Control tokens (the chat template's turn markers) become NUL, which no reply writes:
            # matches never span them and continuations are cut there.
            source = b"".join(self._session.token_bytes(token) or TURN_BOUNDARY for token in self._prompt)
            self._text.begin(source.decode("utf-8", errors="replace"))
            self._text_ready = True
        for token in history[len(self._prompt) + self._reply_tokens :]:
            self._reply_bytes += self._session.token_bytes(token)
        self._reply_tokens = len(history) - len(self._prompt)
        max_chars = max_tokens * CHARS_PER_DRAFT_TOKEN
        found = self._text.continuation(self._reply_bytes.decode("utf-8", errors="ignore"), max_chars)
        if found is None:
            return [], ""
        text, boundary, _ = found.text.partition(TURN_BOUNDARY.decode())
        if not text.strip():
            return [], ""
        tokens = self._session.tokenize(text)
        if found.cut and not boundary:
            tokens = tokens[:-1]  # the text may end inside a word
        return tokens[:max_tokens], self.acceptance_key(found.match_chars, found.unique, TEXT_MATCH_BUCKETS, "text")

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
                proposal = self._within_turn(history[best_end : best_end + max_tokens])
                return proposal, self.acceptance_key(best_match, earlier == 1) if proposal else ""
        return [], ""

    def _within_turn(self, tokens: list[int]) -> list[int]:
        """``tokens`` up to the end of the turn they were copied from: through an end-of-turn token
        (the reply may end there too) and before any other control token. What follows in the
        prompt is chat-template text (a role name, the next header) that a reply never writes."""
        for index, token in enumerate(tokens):
            if self._is_control(token):
                return tokens[: index + 1] if self._session.is_end_of_generation(token) else tokens[:index]
        return tokens

    def _is_control(self, token: int) -> bool:
        """A control token (a chat-template marker) adds no text; remembered per token id."""
        if token not in self._control:
            self._control[token] = not self._session.token_bytes(token)
        return self._control[token]

    @staticmethod
    def acceptance_key(
        match_length: int, unique: bool, buckets: tuple[int, ...] = LOOKUP_MATCH_BUCKETS, kind: str = ""
    ) -> str:
        """ "lookup:<kind><bucket>:<unique|ambiguous>"; text matches have kind "text"."""
        bucket = max(bucket for bucket in buckets if bucket <= max(match_length, buckets[0]))
        return f"lookup:{kind}{bucket}:{'unique' if unique else 'ambiguous'}"

    @staticmethod
    def continues_a_copy(key: str) -> bool:
        """Whether a proposal with this key continues a long match (the longest bucket of its kind:
        16+ tokens, or 48+ characters of text): the reply is already copying, and such drafts
        rarely fail at their first token (they fail where the copied passage ends)."""
        bucket = key.split(":")[1] if key.count(":") == 2 else ""
        return bucket in (f"{LOOKUP_MATCH_BUCKETS[-1]}", f"text{TEXT_MATCH_BUCKETS[-1]}")

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

    def next_logits(self, history: list[int], should_stop: Callable[[], bool] | None = None) -> np.ndarray | None:
        """Bring the KV cache in step with ``history`` and return the logits that follow it; None
        when ``should_stop`` said so between the pieces of a long read (a whole prompt, at first)."""
        session = self.session
        common = session.common_prefix_length(history)
        if common == len(history):
            common -= 1  # the last token must be evaluated again for its logits
        session.truncate(common)
        return session.evaluate_prompt(history[common:], should_stop=should_stop)

    def draft(
        self,
        history: list[int],
        max_tokens: int,
        *,
        sampling: SamplingSettings,
        rng: np.random.Generator,
        keep_going: Callable[[float, int], bool] | None = None,
        min_confidence: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
    ) -> Draft:
        """Up to ``max_tokens`` tokens; none when ``should_stop`` ended the read of the history."""
        started = time.perf_counter()
        draft = Draft(acceptance_key=self.name)
        if max_tokens <= 0:
            return draft
        logits = self.next_logits(history, should_stop)
        if logits is None:
            return draft
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
