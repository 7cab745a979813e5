"""The settings dialog: how replies are decoded, saved for the current user.

It edits a ChatSettings value and hands back a new one (or None when cancelled); the app stores
it and applies it to the next reply. A value out of range keeps the dialog open with the
store's own message ("temperature must be between 0 and 5, not 7").
"""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from duetto.app.core.settings import ChatSettings
from duetto.app.tui.dialogs import DIALOG_CSS
from duetto.app.tui.keys_in_order import OrderedInput
from duetto.engine.drafters import DRAFTER_CHOICES
from duetto.engine.stats import MODES
from duetto.store.settings import InvalidSetting

MODE_LABELS = {
    "exact": "exact: draft-verify, lossless",
    "fast": "fast: small writes, large checks",
    "target": "target: the large model alone",
}
DRAFTER_LABELS = {
    "auto": "auto: picked per step",
    "model": "model: the small model",
    "lookup": "lookup: copy earlier text",
    "none": "none: no drafting",
}
# (field, label, parse): the fields typed as numbers, in the order shown.
NUMBER_FIELDS = [
    ("temperature", "Temperature (0: greedy)", float),
    ("max_tokens", "Max tokens per reply", int),
    ("fallback_threshold", "fast: fallback below (0-1)", float),
    ("rollback_threshold", "fast: rollback above (nats)", float),
    ("max_draft_run", "fast: max run (0: no limit)", int),
]
LOCAL_DECODING_FIELDS = {"fallback_threshold", "rollback_threshold", "max_draft_run"}
"""The number fields of duetto's own draft-verify, which a remote target's server does not read."""


class SettingsScreen(ModalScreen[ChatSettings | None]):
    """Mode, temperature, max tokens, drafter and the fast-mode thresholds of this user."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="SettingsScreen")
        + """
    SettingsScreen > Vertical { width: 80; max-height: 100%; overflow-y: auto; }
    SettingsScreen .row { height: 1; margin: 0 0 1 0; }
    SettingsScreen .row Label { width: 30; }
    SettingsScreen .row Input, SettingsScreen .row Select { width: 1fr; }
    SettingsScreen #settings-error { color: $error; height: auto; }
    SettingsScreen #settings-buttons { height: auto; margin: 1 0 0 0; }
    SettingsScreen #settings-buttons Button { margin: 0 2 0 0; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel_settings")]

    def __init__(self, settings: ChatSettings, user_name: str, remote_target: str | None = None) -> None:
        """``remote_target``: where the target runs when a server decodes the replies; the fields
        of duetto's own decoding are then shown but closed, kept for local models."""
        super().__init__()
        self.settings = settings
        self.user_name = user_name
        self.remote_target = remote_target

    def compose(self) -> ComposeResult:
        local_only = self.remote_target is not None
        with Vertical():
            yield Label(f"[b]Settings of user {self.user_name}[/b] (used from the next reply)")
            if self.remote_target:
                yield Label(f"The target on {self.remote_target} drafts for itself: mode, drafter and the "
                            "fast-mode fields apply to local models only.", id="settings-remote")  # fmt: skip
            with Horizontal(classes="row"):
                yield Label("Mode")
                yield Select([(MODE_LABELS[mode], mode) for mode in MODES], value=self.settings.mode,
                             allow_blank=False, compact=True, id="mode", disabled=local_only)  # fmt: skip
            with Horizontal(classes="row"):
                yield Label("exact: drafter")
                yield Select([(DRAFTER_LABELS[name], name) for name in DRAFTER_CHOICES], value=self.settings.drafter,
                             allow_blank=False, compact=True, id="drafter", disabled=local_only)  # fmt: skip
            for name, label, _ in NUMBER_FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield OrderedInput(str(getattr(self.settings, name)), compact=True, id=name,
                                disabled=local_only and name in LOCAL_DECODING_FIELDS)  # fmt: skip
            yield Label("", id="settings-error")
            yield Label("Tab moves between fields; Enter saves, Esc cancels.")
            with Horizontal(id="settings-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def chosen(self) -> ChatSettings:
        """The settings as filled in; raises InvalidSetting naming the first bad field."""
        values: dict = {"mode": self.query_one("#mode", Select).value,
                        "drafter": self.query_one("#drafter", Select).value}  # fmt: skip
        for name, _, parse in NUMBER_FIELDS:
            typed = self.query_one(f"#{name}", Input).value.strip()
            try:
                values[name] = parse(typed)
            except ValueError:
                kind = "a whole number" if parse is int else "a number"
                raise InvalidSetting(f"{name} must be {kind}, not {typed!r}") from None
        return replace(self.settings, **values)

    def action_save(self) -> None:
        try:
            settings = self.chosen()
        except InvalidSetting as error:
            self.query_one("#settings-error", Label).update(str(error))
            return
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()
