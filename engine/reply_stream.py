"""What ``Decoder.generate`` yields: each step's new text with who wrote each piece, then the stats.

Typed values rather than bare strings, so that a front-end colours the draft's text, counts
tokens for a live rate, or collects token ids for a benchmark from the stream itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def collect_reply(
    stream: Iterable[Written | ReplyStats],
    on_delta: Callable[[str], None] | None = None,
    on_written: Callable[[Written], None] | None = None,
) -> Reply:
    """A generation's stream (Written pieces, then one ReplyStats) collected into a Reply; each
    piece goes to ``on_written``, its text (when there is any) to ``on_delta``. What every
    decoder's ``reply`` does, local or remote."""
    reply = Reply()
    for item in stream:
        if isinstance(item, ReplyStats):
            reply.stats = item
            return reply
        reply.add(item)
        if on_written is not None:
            on_written(item)
        if on_delta is not None and item.text:
            on_delta(item.text)
    raise AssertionError("a generation always ends with its stats")
