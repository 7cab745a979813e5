"""Small modal screens: help, rename, confirm, a long paste."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from duetto.app.tui.keys_in_order import OrderedInput

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 70; height: auto; border: thick $accent; background: $surface; padding: 1 2; }}
{name} Label, {name} Static {{ width: 100%; }}
"""
"""A centred box; its text wraps to the box (a Label is as wide as its text, which cut long lines).
"""


class HelpScreen(ModalScreen[None]):
    """Every key, in two columns so that a wrapped line keeps its place; made from the bindings
    in effect (app/tui/keys.py), so a key rebound in keys.yaml shows as it is now."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="HelpScreen")
        + """
    HelpScreen > Vertical { width: 90; height: 90%; }
    HelpScreen VerticalScroll { height: 1fr; }
    """
    )
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", id="close_help")]

    def __init__(self, rows: list[tuple[str, str]], notes: list[str]) -> None:
        super().__init__()
        self.rows = rows
        self.notes = notes

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for keys, what in self.rows:
            table.add_row(keys, what)
        with Vertical():
            yield Label("[b]duetto keys[/b]")
            with VerticalScroll():
                yield Static(table)
                for note in self.notes:
                    yield Static("\n" + note, markup=False)
            yield Label("Esc closes; the list scrolls.")


class RenameScreen(ModalScreen[str | None]):
    DEFAULT_CSS = DIALOG_CSS.format(name="RenameScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel_rename")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.current_title = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Rename this chat (Enter to save, Esc to cancel)")
            yield OrderedInput(value=self.current_title, id="new-title")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [Binding("escape,n", "answer(False)", "No", id="confirm_no"), Binding("y", "answer(True)", "Yes",
                                                                                      id="confirm_yes")]  # fmt: skip

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Button("Yes (y)", id="yes", variant="error")
            yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class PasteScreen(ModalScreen[str | None]):
    """A long paste: keep it as a document ("document"), send it as it is ("send"), or Esc to
    cancel (None), which puts it back in the prompt box unsent."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PasteScreen")
    BINDINGS = [
        Binding("escape", "choose(None)", "Cancel", id="paste_cancel"),
        Binding("d", "choose('document')", "Keep as a document", id="paste_document"),
        Binding("s", "choose('send')", "Send as it is", id="paste_send"),
    ]

    def __init__(self, words: int) -> None:
        super().__init__()
        self.words = words

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                f"This paste is long ({self.words:,} words). Keep it as a document and answer from its memory, "
                "or send it whole in the prompt?"
            )
            yield Button("Keep as a document (d)", id="document", variant="primary")
            yield Button("Send as it is (s)", id="send")
            yield Button("Cancel (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
