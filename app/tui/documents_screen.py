"""Documents in the chat app: the panel that attaches them, and a cited chunk opened whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from duetto.app.core.wording import plural
from duetto.app.tui.dialogs import DIALOG_CSS
from duetto.app.tui.keys_in_order import OrderedInput
from duetto.store.documents import Chunk, Document


@dataclass(frozen=True)
class DocumentsChoice:
    attached: frozenset[int]
    """Ids of the documents the conversation should have attached."""
    add_path: str | None = None
    """A file to read into memory (and attach) next."""


class DocumentsScreen(ModalScreen[DocumentsChoice | None]):
    """Space ticks a document for this conversation; a path + Enter reads a new one."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="DocumentsScreen")
        + """
    DocumentsScreen SelectionList { height: auto; max-height: 16; }
    """
    )
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel_documents"),
        Binding("ctrl+s", "save", "Save", id="save_documents"),
    ]

    def __init__(self, documents: list[Document], attached: set[int]) -> None:
        super().__init__()
        self.documents = documents
        self.attached = attached

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]Documents[/b]: Space attaches one to this chat, Ctrl+S saves, Esc cancels")
            if self.documents:
                yield SelectionList[int](
                    *(
                        Selection(
                            f"{document.name}  ({plural(document.tokens, 'token')}, "
                            f"{plural(document.chunk_count, 'chunk')}"
                            + ("" if document.complete else ", unfinished: add it again")
                            + ")",
                            document.id,
                            document.id in self.attached,
                            disabled=not document.complete,
                        )
                        for document in self.documents
                    ),
                    id="documents",
                )
            else:
                yield Static("No documents yet. Paste a long text in the chat, or give a file's path below.")
            yield Static(
                "Read a file (text, Markdown, PDF) or a folder of code into memory and attach it: path, then Enter"
            )
            yield OrderedInput(placeholder="~/notes/report.md", id="add-path")
            error = Static("", id="add-path-error")
            error.display = False  # shown with a path that is not there
            yield error

    def selected(self) -> frozenset[int]:
        if not self.documents:
            return frozenset()
        return frozenset(self.query_one("#documents", SelectionList).selected)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """A path that is not there keeps the dialog open with the path as typed, to mend it."""
        typed = event.value.strip()
        if typed and not (found := Path(typed).expanduser()).exists():
            error = self.query_one("#add-path-error", Static)
            error.update(Text(f"No such file or folder: {found}", style="red"))
            error.display = True
            return
        self.dismiss(DocumentsChoice(self.selected(), typed or None))

    def action_save(self) -> None:
        self.dismiss(DocumentsChoice(self.selected()))

    def action_cancel(self) -> None:
        self.dismiss(None)


class SourcesScreen(ModalScreen[int | None]):
    """The chunks the last document answer used; Enter opens one."""

    DEFAULT_CSS = DIALOG_CSS.format(name="SourcesScreen")
    BINDINGS = [Binding("escape", "cancel", "Close", id="close_sources")]

    def __init__(self, citations: list[tuple[int, str]]) -> None:
        super().__init__()
        self.citations = citations

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Sources[/b] of the last document answer (Enter opens, Esc closes)")
            yield OptionList(*(Option(label, id=str(chunk_id)) for chunk_id, label in self.citations), id="sources")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChunkScreen(ModalScreen[None]):
    """One chunk whole, and the compressed text the large model may have read instead."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ChunkScreen")
        + """
    ChunkScreen > Vertical { width: 90%; height: 80%; }
    ChunkScreen VerticalScroll { height: 1fr; }
    """
    )
    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="close_chunk")]

    def __init__(self, label: str, chunk: Chunk) -> None:
        super().__init__()
        self.label = label
        self.chunk = chunk

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.label}[/b]: {self.chunk.tokens} tokens (Esc closes)")
            with VerticalScroll():
                yield Static(self.chunk.text, markup=False, id="chunk-text")
                yield Label(f"\n[b]compressed[/b] ({self.chunk.compressed_tokens} tokens)")
                yield Static(self.chunk.compressed_text, markup=False, id="chunk-compressed")
