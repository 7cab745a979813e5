"""The lookup drafter: copies what followed an earlier occurrence of the reply's end, no model.

Edits and quotes repeat long runs of the prompt, and code repeats itself, so the continuation of
an earlier occurrence is often exactly right. Matches are found on tokens (an n-gram index of the
prompt and reply) and on text (engine/text_lookup.py), which survives the small changes a reply
makes while quoting; with a plan, the cost model chooses between them and picks the length.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Sequence

from duetto.engine.cost_model import AcceptanceKey, MatchKind
from duetto.engine.drafting import Draft, DrafterStats, DraftRequest, count_draft
from duetto.engine.model_session import ModelSession
from duetto.engine.text_lookup import TURN_END, TextLookup

LOOKUP_NGRAMS = (2, 1)  # matches are found through the last two tokens, else the last one, then extended
LOOKUP_MAX_MATCH = 64
LOOKUP_CANDIDATES = 32
LOOKUP_MATCH_BUCKETS = (1, 2, 4, 8, 16)
TEXT_MATCH_BUCKETS = (12, 48)  # characters of the reply's end found in the prompt's text
CHARS_PER_DRAFT_TOKEN = 6  # text taken from the source per token wanted (tokens average ~4 characters)
TURN_BOUNDARY = TURN_END.encode()  # stands for a control token in the prompt's text
LONGEST_BUCKET = {"tokens": LOOKUP_MATCH_BUCKETS[-1], "text": TEXT_MATCH_BUCKETS[-1]}

Proposal = tuple[list[int], AcceptanceKey]
Candidate = tuple[list[int], AcceptanceKey, bool]
"""A proposal, and whether it was copied from the caller's prediction."""


def acceptance_key(match_length: int, unique: bool, match: MatchKind = "tokens") -> AcceptanceKey:
    """The key of a match ``match_length`` long (tokens, or characters for a text match)."""
    buckets = TEXT_MATCH_BUCKETS if match == "text" else LOOKUP_MATCH_BUCKETS
    bucket = max(bucket for bucket in buckets if bucket <= max(match_length, buckets[0]))
    return AcceptanceKey("lookup", match, bucket, unique)


def continues_a_copy(key: AcceptanceKey | None) -> bool:
    """Whether a proposal with this key continues a long match (the longest bucket of its kind:
    16+ tokens, or 48+ characters of text): the reply is already copying, and such drafts rarely
    fail at their first token (they fail where the copied passage ends)."""
    return key is not None and key.drafter == "lookup" and key.bucket == LONGEST_BUCKET.get(key.match)


class LookupDrafter:
    """Copies what followed the longest earlier match of the text's last tokens (prompt included)."""

    name = "lookup"

    def __init__(self, session: ModelSession) -> None:
        self.stats = DrafterStats()
        self._positions: dict[tuple[int, ...], list[int]] = defaultdict(list)
        self._indexed = 0
        self._session = session
        self._text = TextLookup()
        self._prompt: list[int] = []
        self._text_ready = False
        self._reply_bytes = bytearray()
        self._reply_tokens = 0
        self._control: dict[int, bool] = {}  # token -> whether it is a control token (no text)
        self._prediction: list[int] = []
        self._prediction_positions: dict[tuple[int, ...], list[int]] = defaultdict(list)
        self._prediction_cursor = 0  # where in the prediction the reply was last found
        self._earlier: list[int] = []
        self._earlier_positions: dict[tuple[int, ...], list[int]] = defaultdict(list)

    def begin(self, prompt: list[int], prediction: Sequence[int] = (), earlier: Sequence[int] = ()) -> None:
        """Forget the last generation and index ``prompt``, and ``prediction`` and ``earlier``
        (turns folded out of the prompt) apart from it. The earlier turns' index is kept while
        they stay the same, as they do from one turn to the next until the next fold."""
        self._positions.clear()
        self._indexed = 0
        self._index(prompt)
        self._prediction = list(prediction)
        self._prediction_positions = defaultdict(list)
        _index_ngrams(self._prediction, self._prediction_positions, 0)
        self._prediction_cursor = 0
        if list(earlier) != self._earlier:
            self._earlier = list(earlier)
            self._earlier_positions = defaultdict(list)
            _index_ngrams(self._earlier, self._earlier_positions, 0)
        self._prompt = prompt
        self._text_ready = False  # the prompt's text is read on the first text lookup, if any
        self._reply_bytes.clear()
        self._reply_tokens = 0

    def draft(self, request: DraftRequest) -> Draft:
        """Without a plan: the prediction's continuation, else the token match's, up to
        ``max_tokens``. With one: the
        proposal (token or text match) whose length the cost model expects to pay best, if any
        beats the plan's required rate; the keys of matches not offered drift back to their priors."""
        started = time.perf_counter()
        plan = request.plan
        if plan is None:
            tokens, key = self.find_in_prediction(request.history, request.max_tokens)
            predicted = bool(tokens)
            if not predicted:
                tokens, key = self.find(request.history, request.max_tokens)
            if not tokens:
                tokens, key = self.find_in_earlier(request.history, request.max_tokens)
            return Draft(tokens, [None] * len(tokens), key, seconds=time.perf_counter() - started,
                         from_prediction=predicted)  # fmt: skip
        best = Draft()
        offered: set[AcceptanceKey] = set()
        for tokens, key, predicted in self.candidates(request.history, min(plan.copy_limit, request.max_tokens)):
            if not continues_a_copy(key):
                tokens = tokens[: plan.start_limit]
            if not tokens:
                continue
            offered.add(key)
            length, rate = plan.best_length(key, len(tokens), self.name)
            if length > 0 and rate > plan.required_rate and rate > best.expected_rate:
                best = Draft(tokens[:length], [None] * length, key, expected_rate=rate, from_prediction=predicted)
        for known in list(plan.cost_model.acceptance):
            if known.drafter == self.name and known not in offered:
                plan.cost_model.relax(known)
        best.seconds = time.perf_counter() - started
        return best

    def accept(self, draft: Draft, accepted: int) -> None:
        count_draft(self.stats, draft, accepted)

    def candidates(self, history: list[int], max_tokens: int) -> list[Candidate]:
        """Every proposal for continuing ``history``: (tokens, acceptance key, from the prediction),
        the token match first (it wins a tie: where the prompt and the reply say as much as the
        prediction, the reply's own recent lines know the edit it is making, and the prediction
        does not), then the prediction's, then the earlier turns', then the text match."""
        found: list[Candidate] = []
        tokens, key = self.find(history, max_tokens)
        predicted, predicted_key = self.find_in_prediction(history, max_tokens)
        if tokens:  # counted as the prediction's where the prediction says the same, all of it
            found.append((tokens, key, predicted[: len(tokens)] == tokens))
        if predicted:
            found.append((predicted, predicted_key, True))
        recalled, recalled_key = self.find_in_earlier(history, max_tokens)
        if recalled and recalled != tokens[: len(recalled)]:
            found.append((recalled, recalled_key, False))
        text_tokens, text_key = self.find_text(history, max_tokens)
        if not text_tokens:
            return found
        if tokens[: len(text_tokens)] != text_tokens[: len(tokens)] and self._text.relays_out:
            found = [candidate for candidate in found if candidate[2]]  # lines laid out the reply's own way
        return [*found, (text_tokens, text_key, False)]

    def find_text(self, history: list[int], max_tokens: int) -> Proposal | tuple[list[int], None]:
        """The prompt's text after the place the reply's end quotes, tokenized; ([], None) if none."""
        if max_tokens <= 0:
            return [], None
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
            return [], None
        text, boundary, _ = found.text.partition(TURN_BOUNDARY.decode())
        if not text.strip():
            return [], None
        tokens = self._session.tokenize(text)
        if found.cut and not boundary:
            tokens = tokens[:-1]  # the text may end inside a word
        return tokens[:max_tokens], acceptance_key(found.match_chars, found.unique, "text")

    def _index(self, history: list[int]) -> None:
        """Record, for each n-gram, the positions just after its occurrences (appends only)."""
        _index_ngrams(history, self._positions, self._indexed)
        self._indexed = max(self._indexed, len(history))

    def find(self, history: list[int], max_tokens: int) -> Proposal | tuple[list[int], None]:
        """(proposed continuation, its acceptance key); ([], None) when there is none.

        The key sorts proposals by how much evidence backs them, which predicts acceptance:
        how long the match is, and whether the matched tokens occur once before or several
        times (a match on "." or " the" is a guess; on a rare word it is usually a copy).
        """
        self._index(history)
        proposal, key, _ = self._continuation(history, history, self._positions, max_tokens)
        return proposal, key

    def find_in_prediction(self, history: list[int], max_tokens: int) -> Proposal | tuple[list[int], None]:
        """What follows the reply's end in the caller's prediction; ([], None) if it is not there.

        A prediction is read as more prompt (its matches share the prompt's acceptance
        statistics): an editor's prediction is usually the file its prompt holds too. The reply
        moves through it from start to end, so occurrences from where it was last found are
        tried first; in a long file a common pair of tokens occurs more often than are tried."""
        if not self._prediction:
            return [], None
        proposal, key, end = self._continuation(
            history, self._prediction, self._prediction_positions, max_tokens, after=self._prediction_cursor
        )
        if proposal:
            self._prediction_cursor = end
        return proposal, key

    def find_in_earlier(self, history: list[int], max_tokens: int) -> Proposal | tuple[list[int], None]:
        """What followed the reply's end in the conversation's folded turns; ([], None) if it is not
        there. Read as more prompt, as a prediction is: a turn folded into the memory was prompt
        once, and a reply that quotes it (code asked for again, an answer repeated) copies it."""
        if not self._earlier:
            return [], None
        proposal, key, _ = self._continuation(history, self._earlier, self._earlier_positions, max_tokens)
        return proposal, key

    def _continuation(
        self,
        history: list[int],
        source: list[int],
        positions: dict[tuple[int, ...], list[int]],
        max_tokens: int,
        after: int | None = None,
    ) -> tuple[list[int], AcceptanceKey | None, int]:
        """(the continuation in ``source`` after the longest match of ``history``'s end, its key,
        where in ``source`` it starts), by the n-gram index ``positions``: ``history``'s own (the
        suffix itself is skipped, ties go to the latest occurrence) or, with ``after``, another
        text's (occurrences from ``after`` on are tried first, and ties go to the earliest)."""
        length = len(history)
        if not length or max_tokens <= 0:
            return [], None, 0
        own = source is history
        for size in LOOKUP_NGRAMS:
            if length < size:
                continue
            candidates = positions.get(tuple(history[-size:]), [])
            earlier = len(candidates) - (1 if own and candidates and candidates[-1] >= length else 0)
            best_end, best_match = -1, 0
            if after is None:
                ordered = list(reversed(candidates[-LOOKUP_CANDIDATES - 1 :]))
            else:
                start = bisect.bisect_left(candidates, after)
                ordered = candidates[start : start + LOOKUP_CANDIDATES + 1] + candidates[:start][:LOOKUP_CANDIDATES]
            for end in ordered:
                if own and end >= length:
                    continue  # the suffix itself
                match = size
                while (
                    match < LOOKUP_MAX_MATCH
                    and end - match - 1 >= 0
                    and match < length
                    and source[end - match - 1] == history[-match - 1]
                ):
                    match += 1
                if match > best_match:
                    best_end, best_match = end, match
            if best_end >= 0:
                proposal = self._within_turn(source[best_end : best_end + max_tokens])
                if proposal:
                    return proposal, acceptance_key(best_match, earlier == 1), best_end
                return [], None, 0
        return [], None, 0

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


def _index_ngrams(tokens: Sequence[int], positions: dict[tuple[int, ...], list[int]], start: int) -> None:
    """Record in ``positions``, for each n-gram of ``tokens`` ending after ``start``, the position
    just after it."""
    for end in range(start + 1, len(tokens) + 1):
        for size in LOOKUP_NGRAMS:
            if end >= size:
                positions[tuple(tokens[end - size : end])].append(end)
