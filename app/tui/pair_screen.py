"""The models dialog: which draft and target model pair this chat is answered by.

It only chooses: the app keeps the pair with the conversation and loads it; the next reply
rereads the conversation with the new target.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from duetto.app.core.models import ModelPair
from duetto.app.tui.dialogs import DIALOG_CSS


class PairScreen(ModalScreen[ModelPair | None]):
    DEFAULT_CSS = DIALOG_CSS.format(name="PairScreen") + "PairScreen OptionList { height: auto; max-height: 12; }"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel_pair")]

    def __init__(self, choices: list[tuple[str, ModelPair]], current: ModelPair | None) -> None:
        super().__init__()
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Models[/b] for this chat (Enter picks; the next reply rereads the chat with them)")
            yield OptionList(
                *(
                    Option(f"{'●' if pair == self.current else ' '} {pair.label}  ({profile})", id=str(index))
                    for index, (profile, pair) in enumerate(self.choices)
                ),
                id="pairs",
            )
            yield Label("Pairs whose models are not on this machine: duetto models fetch PROFILE. Esc cancels.")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        pairs = [pair for _, pair in self.choices]
        options.highlighted = pairs.index(self.current) if self.current in pairs else 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[int(event.option.id)][1])

    def action_cancel(self) -> None:
        self.dismiss(None)
