"""Turning logits into token choices: greedy, sampled, and the acceptance rule of speculative sampling.

Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): a drafted token x,
proposed with probability q(x), is accepted with probability min(1, p(x) / q(x))
where p is the target's distribution; on rejection the replacement is drawn from
norm(max(0, p - q)). The accepted-or-replaced token is then distributed exactly as
p. A deterministic proposer (lookup) is the case q = one-hot(x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    exponentials = np.exp(shifted, dtype=np.float64)
    return exponentials / exponentials.sum()


def top_two_gap(logits: np.ndarray) -> float:
    """Logit of the best token minus the second best: how near a tie the greedy choice was."""
    top_two = np.partition(logits, -2)[-2:]
    return float(top_two[1] - top_two[0])


def distribution(logits: np.ndarray, settings: SamplingSettings) -> tuple[np.ndarray, np.ndarray]:
    """The sampling distribution after top-k, temperature and top-p, as (token ids, probabilities).

    Only the kept tokens are returned (at most top_k), so callers never touch the
    whole vocabulary twice.
    """
    keep = min(settings.top_k, logits.size) if settings.top_k > 0 else logits.size
    candidates = np.argpartition(logits, -keep)[-keep:]
    candidate_logits = logits[candidates].astype(np.float64) / settings.temperature
    order = np.argsort(-candidate_logits, kind="stable")
    candidates, candidate_logits = candidates[order], candidate_logits[order]
    probabilities = softmax(candidate_logits)
    if settings.top_p < 1.0:
        cumulative = np.cumsum(probabilities)
        cut = int(np.searchsorted(cumulative, settings.top_p)) + 1
        candidates, probabilities = candidates[:cut], probabilities[:cut]
        probabilities = probabilities / probabilities.sum()
    return candidates, probabilities


def choose(logits: np.ndarray, settings: SamplingSettings, rng: np.random.Generator) -> int:
    if settings.greedy:
        return int(np.argmax(logits))
    tokens, probabilities = distribution(logits, settings)
    return int(rng.choice(tokens, p=probabilities))


def probability_of(token: int, tokens: np.ndarray, probabilities: np.ndarray) -> float:
    match = np.flatnonzero(tokens == token)
    return float(probabilities[match[0]]) if match.size else 0.0


def accept_or_replace(
    drafted: int,
    target: tuple[np.ndarray, np.ndarray],
    draft: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
) -> tuple[bool, int]:
    """One step of speculative sampling: (accepted, token to emit).

    ``target`` and ``draft`` are (token ids, probabilities) from ``distribution``;
    ``draft`` None means the proposal was deterministic (q = one-hot).
    """
    target_tokens, target_probabilities = target
    p = probability_of(drafted, target_tokens, target_probabilities)
    q = 1.0 if draft is None else probability_of(drafted, *draft)
    if q > 0 and rng.random() < min(1.0, p / q):
        return True, drafted
    residual = target_probabilities.copy()
    if draft is None:
        residual[target_tokens == drafted] = 0.0
    else:
        draft_tokens, draft_probabilities = draft
        lookup = dict(zip(draft_tokens.tolist(), draft_probabilities.tolist(), strict=True))
        residual -= np.array([lookup.get(token, 0.0) for token in target_tokens.tolist()])
        np.maximum(residual, 0.0, out=residual)
    total = residual.sum()
    if total <= 0:  # p == q on the support: any target sample is exact
        return False, int(rng.choice(target_tokens, p=target_probabilities))
    return False, int(rng.choice(target_tokens, p=residual / total))
