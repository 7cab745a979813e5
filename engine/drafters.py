"""The drafters by name: one registry, from which every choice of drafter is derived.

``auto`` lets the decoder's cost model pick among every drafter available, each step, in the
registry's order (cheapest first, which wins a tie); ``none`` drafts nothing (the target alone,
on the same code path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from duetto.engine.drafting import Drafter
from duetto.engine.lookup_drafter import LookupDrafter
from duetto.engine.model_drafter import ModelDrafter
from duetto.engine.model_session import ModelSession

DrafterChoice = Literal["auto", "lookup", "model", "none"]
DRAFTER_CHOICES: tuple[DrafterChoice, ...] = get_args(DrafterChoice)

DRAFTERS: dict[str, Callable[[ModelSession, ModelSession | None], Drafter | None]] = {
    "lookup": lambda target, draft: LookupDrafter(target),
    "model": lambda target, draft: ModelDrafter(draft) if draft is not None else None,
}
"""Name → how to build it over the target and the draft model (None: it cannot run without one)."""

assert set(DRAFTERS) == set(DRAFTER_CHOICES) - {"auto", "none"}, "every drafter is a choice"


def build_drafters(target: ModelSession, draft: ModelSession | None) -> dict[str, Drafter]:
    """Every drafter that can run over these sessions, in the registry's order."""
    built = {name: factory(target, draft) for name, factory in DRAFTERS.items()}
    return {name: drafter for name, drafter in built.items() if drafter is not None}


def drafters_for(choice: DrafterChoice, available: dict[str, Drafter]) -> list[Drafter]:
    """The drafters a choice lets the decoder use (``auto``: all there are)."""
    if choice == "none":
        return []
    if choice == "auto":
        return list(available.values())
    return [available[choice]] if choice in available else []
