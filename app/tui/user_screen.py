"""The user switcher: pick a user, or type a new name to add one.

Each user has their own conversations, settings and plugin. The dialog only
chooses: it hands back the name, and the app creates the user when the name is new.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ListItem, ListView

from duetto.app.tui.dialogs import DIALOG_CSS
from duetto.app.tui.keys_in_order import OrderedInput
from duetto.store.conversations import validate_user_name
from duetto.store.errors import StoreError


class UserItem(ListItem):
    def __init__(self, name: str, current: bool) -> None:
        super().__init__(Label(f"{'●' if current else ' '} {name}"))
        self.user_name = name


class UserScreen(ModalScreen[str | None]):
    """Dismissed with the chosen user's name (possibly a new one), or None when cancelled."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="UserScreen")
        + """
    UserScreen ListView { height: auto; max-height: 12; margin: 1 0; }
    UserScreen #user-error { color: $error; height: auto; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel_user")]

    def __init__(self, names: list[str], current: str) -> None:
        super().__init__()
        self.names = names
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Users[/b]: each has their own chats, settings and plugin. Enter picks one.")
            current_index = self.names.index(self.current) if self.current in self.names else 0
            items = [UserItem(name, name == self.current) for name in self.names]
            yield ListView(*items, id="users", initial_index=current_index)
            yield OrderedInput(placeholder="New user name, then Enter", id="new-user")
            yield Label("", id="user-error")
            yield Label("Esc cancels.")

    def on_mount(self) -> None:
        self.query_one(ListView).focus()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, UserItem):
            self.dismiss(event.item.user_name)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = event.value.strip()
        try:
            validate_user_name(name)
        except StoreError as error:
            self.query_one("#user-error", Label).update(str(error))
            return
        if name in self.names:
            self.query_one("#user-error", Label).update(f"{name!r} already exists: pick it in the list")
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)
