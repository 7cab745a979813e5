"""The draft-colour view: a reply as plain text, coloured by who wrote each piece.

The engine reports the reply as (source, text) spans (``Generation.text_spans``): "target" for
text the large model wrote, "model" or "lookup" for text a drafter proposed and the target
accepted. Spans hold whole characters, so colouring them never splits one.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

Spans = list[tuple[str, str]]

SOURCE_STYLES = {"target": "", "model": "bold cyan", "lookup": "bold magenta"}
SOURCE_LABELS = {"model": "draft model", "lookup": "copied (lookup)", "target": "target"}


def coloured(spans: Spans) -> Text:
    """The spans' text, each styled by its source (an unknown source gets no style)."""
    text = Text()
    for source, piece in spans:
        text.append(piece, style=SOURCE_STYLES.get(source, ""))
    return text


def legend() -> Text:
    """One line naming each colour."""
    text = Text("Written by: ")
    for source in ("model", "lookup", "target"):
        text.append(SOURCE_LABELS[source], style=SOURCE_STYLES[source] or "underline")
        if source != "target":
            text.append(" · ")
    text.append("   (F5 hides)")
    return text


class DraftLegend(Static):
    """Above the chat while the draft-colour view is on."""

    DEFAULT_CSS = """
    DraftLegend { height: 1; padding: 0 2; color: $text-muted; display: none; }
    """

    def __init__(self) -> None:
        super().__init__(legend())


class SourceText(Static):
    """A reply shown by source; it sits beside the reply's Markdown block and shares its spans."""

    DEFAULT_CSS = """
    SourceText { margin: 0 1 1 1; padding: 0 1; border-left: thick $warning; }
    """

    def __init__(self, spans: Spans) -> None:
        super().__init__(coloured(spans))
        self.spans = spans

    def refresh_spans(self) -> None:
        """Redraw after the shared span list grew."""
        self.update(coloured(self.spans))
