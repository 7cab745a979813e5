"""The profile switcher: pick a user, or type a new name to add one.

Each profile has its own conversations and settings (and, later, plugins). The dialog only
chooses: it hands back the name, and the app creates the user when the name is new.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ListItem, ListView

from duetto.app.tui.dialogs import DIALOG_CSS
from duetto.store.conversations import validate_user_name
from duetto.store.errors import StoreError


class ProfileItem(ListItem):
    def __init__(self, name: str, current: bool) -> None:
        super().__init__(Label(f"{'●' if current else ' '} {name}"))
        self.profile = name


class ProfileScreen(ModalScreen[str | None]):
    """Dismissed with the chosen profile's name (possibly a new one), or None when cancelled."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ProfileScreen")
        + """
    ProfileScreen ListView { height: auto; max-height: 12; margin: 1 0; }
    ProfileScreen #profile-error { color: $error; height: auto; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel_profile")]

    def __init__(self, names: list[str], current: str) -> None:
        super().__init__()
        self.names = names
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("[b]Profiles[/b]: each has its own chats and settings. Enter picks one.")
            current_index = self.names.index(self.current) if self.current in self.names else 0
            items = [ProfileItem(name, name == self.current) for name in self.names]
            yield ListView(*items, id="profiles", initial_index=current_index)
            yield Input(placeholder="New profile name, then Enter", id="new-profile")
            yield Label("", id="profile-error")
            yield Label("Esc cancels.")

    def on_mount(self) -> None:
        self.query_one(ListView).focus()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, ProfileItem):
            self.dismiss(event.item.profile)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = event.value.strip()
        try:
            validate_user_name(name)
        except StoreError as error:
            self.query_one("#profile-error", Label).update(str(error))
            return
        if name in self.names:
            self.query_one("#profile-error", Label).update(f"{name!r} already exists: pick it in the list")
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)
