"""What ``Decoder.generate`` yields: each step's new text with who wrote each piece, then the stats.

Typed values rather than bare strings, so that a front-end colours the draft's text, counts
tokens for a live rate, or collects token ids for a benchmark from the stream itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from duetto.engine.cost_model import AcceptanceKey
from duetto.engine.drafting import Source
from duetto.engine.stats import ReplyStats


@dataclass(frozen=True)
class TextPiece:
    text: str
    source: Source
    """Who wrote the token that released this text (a character split across tokens belongs to
    the token that completed it; text held back while it might begin a stop string goes to the
    token that let it out)."""


@dataclass(frozen=True)
class Written:
    """What one decoding step added to the reply."""

    pieces: tuple[TextPiece, ...]
    """The text released, in order (none while text is held back)."""
    token_ids: tuple[int, ...]
    sources: tuple[Source, ...]
    """Per token of ``token_ids``: who wrote it."""
    reply_tokens: int
    """Tokens in the reply so far, these included."""
    top_two_gaps: tuple[float, ...] = ()
    """Per token, when ``DecodeSettings.record_top_two_gaps``: the target's top-2 logit gap."""

    @property
    def text(self) -> str:
        return "".join(piece.text for piece in self.pieces)


@dataclass(frozen=True)
class StepTrace:
    """One verification, for ``generate``'s ``on_step`` hook (experiments, traces)."""

    drafter: str | None
    key: AcceptanceKey | None
    drafted: tuple[int, ...]
    accepted: int
    next_token: int
    draft_seconds: float
    verify_seconds: float


@dataclass
class Reply:
    """A whole reply, as ``Decoder.reply`` collects it from the stream."""

    text: str = ""
    stats: ReplyStats | None = None
    token_ids: list[int] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    pieces: list[TextPiece] = field(default_factory=list)
    top_two_gaps: list[float] = field(default_factory=list)

    def add(self, written: Written) -> None:
        self.text += written.text
        self.token_ids.extend(written.token_ids)
        self.sources.extend(written.sources)
        self.pieces.extend(written.pieces)
        self.top_two_gaps.extend(written.top_two_gaps)
