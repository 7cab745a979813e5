"""What the chat app's workers post back to the UI thread."""

from __future__ import annotations

from textual.message import Message

from duetto.app.core.chat import Turn
from duetto.app.core.models import Engine, ModelPair
from duetto.app.tui.draft_sources import Spans


class EngineReady(Message):
    def __init__(self, engine: Engine, user_name: str, pair: ModelPair | None) -> None:
        super().__init__()
        self.engine, self.user_name, self.pair = engine, user_name, pair


class EngineFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReplyDelta(Message):
    def __init__(self, text: str, spans: Spans, tokens_per_second: float | None) -> None:
        super().__init__()
        self.text, self.spans, self.tokens_per_second = text, spans, tokens_per_second


class ReplyProgress(Message):
    """What the reply's worker is doing before the first token (a fold, reading a long prompt)."""

    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = state


class ReplyFinished(Message):
    def __init__(self, conversation_id: int, turn: Turn | None, error: str | None = None) -> None:
        super().__init__()
        self.conversation_id, self.turn, self.error = conversation_id, turn, error
