"""The system prompt dialog: pick a saved persona or write one in place, for this chat.

It only chooses: it hands back a SystemPromptChoice and the app saves the persona, the
conversation's prompt and, when asked, the user's default (app/core/chat.py reads them).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, OptionList, TextArea
from textual.widgets.option_list import Option

from duetto.app.tui.dialogs import DIALOG_CSS
from duetto.app.tui.keys_in_order import OrderedInput, OrderedTextArea
from duetto.store.personas import Persona

DUETTO_OWN = "duetto's own"


@dataclass(frozen=True)
class SystemPromptChoice:
    prompt: str
    persona_name: str | None = None
    """Also keep the prompt as a persona under this name."""
    as_default: bool = False
    """Also make it the user's default: every chat without a prompt of its own."""


class SystemPromptScreen(ModalScreen[SystemPromptChoice | None]):
    DEFAULT_CSS = (
        DIALOG_CSS.format(name="SystemPromptScreen")
        + """
    SystemPromptScreen > Vertical { width: 80; }
    SystemPromptScreen OptionList { height: auto; max-height: 8; }
    SystemPromptScreen TextArea { height: 8; }
    """
    )
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel_system_prompt"),
        Binding("ctrl+s", "use", "Use", id="use_system_prompt", priority=True),
    ]

    def __init__(self, current: str, default: str, personas: list[Persona]) -> None:
        super().__init__()
        self.current = current
        self.default = default
        self.personas = personas

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]System prompt[/b] for this chat: pick a persona (Enter) or edit the text below.")
            yield OptionList(
                Option(DUETTO_OWN, id=""), *(Option(persona.name, id=persona.name) for persona in self.personas),
                id="personas",
            )  # fmt: skip
            yield OrderedTextArea(self.current, id="prompt-text")
            yield OrderedInput(placeholder="Save it as a persona named… (optional)", id="persona-name")
            yield Checkbox("Default for this user's chats without one of their own", id="as-default")
            yield Label("Ctrl+S uses it for this chat (the next reply rereads the chat with it); Esc cancels.")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        by_name = {persona.name: persona.prompt for persona in self.personas}
        self.query_one(TextArea).text = by_name.get(event.option.id or "", self.default)
        self.query_one(TextArea).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_use()

    def action_use(self) -> None:
        prompt = self.query_one(TextArea).text.strip()
        if not prompt:
            self.notify("The system prompt is empty: pick duetto's own or write one.", severity="warning")
            return
        name = self.query_one("#persona-name", Input).value.strip() or None
        self.dismiss(SystemPromptChoice(prompt, name, self.query_one(Checkbox).value))

    def action_cancel(self) -> None:
        self.dismiss(None)
