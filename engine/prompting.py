"""Fitting a conversation into the context window."""

from __future__ import annotations

from collections.abc import Sequence

from duetto.engine.model_session import ChatMessage, ModelSession


def fit_conversation(session: ModelSession, messages: Sequence[ChatMessage], reply_budget: int) -> list[int]:
    """Prompt tokens for ``messages``, dropping the oldest exchanges until ``reply_budget`` more fit.

    The first message when it is a system message, and the latest message, are always kept; when
    even they do not fit, generation raises ContextFull with the sizes.
    """
    kept = list(messages)
    first_droppable = 1 if kept and kept[0]["role"] == "system" else 0
    while True:
        prompt_tokens = session.chat_prompt_tokens(kept)
        if len(prompt_tokens) + reply_budget <= session.context_length or len(kept) - first_droppable <= 1:
            return prompt_tokens
        del kept[first_droppable : first_droppable + 2]  # the oldest user message and the reply to it
