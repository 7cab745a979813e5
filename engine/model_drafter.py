"""The model drafter: the small GGUF model writes ahead of the target.

Greedy, or sampling for sampled verification. With a plan it first asks the cost model whether a
draft of its pays at all (drafting costs the small model's steps, unlike lookup), then stops
extending the draft once one more token is not expected to pay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from duetto.engine.cost_model import AcceptanceKey
from duetto.engine.drafting import Draft, DrafterStats, DraftRequest, count_draft
from duetto.engine.model_session import ModelSession
from duetto.engine.sampling import distribution, softmax

MODEL_KEY = AcceptanceKey("model")


class ModelDrafter:
    """The small model writes greedily (or samples, for sampled verification)."""

    name = "model"

    def __init__(self, session: ModelSession) -> None:
        self.session = session
        self.stats = DrafterStats()

    def begin(self, prompt: list[int], prediction: Sequence[int] = (), earlier: Sequence[int] = ()) -> None:
        """Nothing to do: the KV cache is brought in step on the first draft, reusing whatever
        prefix it shares with the prompt (most replies never ask this drafter for anything). A
        prediction and earlier turns are the lookup drafter's to copy from."""

    def accept(self, draft: Draft, accepted: int) -> None:
        count_draft(self.stats, draft, accepted)

    def next_logits(self, history: list[int], should_stop: Callable[[], bool] | None = None) -> np.ndarray | None:
        """Bring the KV cache in step with ``history`` and return the logits that follow it; None
        when ``should_stop`` said so between the pieces of a long read (a whole prompt, at first)."""
        session = self.session
        common = session.common_prefix_length(history)
        if common == len(history):
            common -= 1  # the last token must be evaluated again for its logits
        session.truncate(common)
        return session.evaluate_prompt(history[common:], should_stop=should_stop)

    def draft(self, request: DraftRequest) -> Draft:
        """Up to ``request.max_tokens`` tokens; none when the plan says a draft would not pay, or
        when ``should_stop`` ended the read of the history."""
        plan = request.plan
        if plan is None:
            return self._write(request, request.max_tokens, None)
        max_tokens = min(request.max_tokens, plan.start_limit)
        length, expected_rate = plan.best_length(MODEL_KEY, max_tokens, self.name) if max_tokens > 0 else (0, 0.0)
        if length <= 0 or expected_rate <= plan.required_rate:
            plan.cost_model.relax(MODEL_KEY)  # unused, its acceptance drifts back so it is tried again
            return Draft()
        cost_model = plan.cost_model

        def keep_going(probability_all_accepted: float, drafted: int) -> bool:
            return cost_model.worth_extending(probability_all_accepted, self.name, drafted)

        draft = self._write(request, max_tokens, keep_going)
        draft.expected_rate = expected_rate
        return draft

    def _write(self, request: DraftRequest, max_tokens: int, keep_going: Callable[[float, int], bool] | None) -> Draft:
        """``keep_going(probability_all_accepted, drafted_so_far)`` decides after each token
        whether drafting one more pays."""
        started = time.perf_counter()
        sampling = request.sampling
        draft = Draft(key=MODEL_KEY)
        if max_tokens <= 0:
            return draft
        logits = self.next_logits(request.history, request.should_stop)
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
                token = int(request.rng.choice(candidates, p=candidate_probabilities))
                token_probability = float(probabilities[token])
                draft.distributions.append((candidates, candidate_probabilities))
            confidence = float(probabilities.max())
            if confidence < request.min_confidence:
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
