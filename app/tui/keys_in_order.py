"""Editing keys applied in the order they were typed.

Textual's Input and TextArea insert a typed character in their own key handler, but run their
bound keys (Backspace, arrows, Ctrl+K, ...) only once the key event has bubbled through every
ancestor up to the app. Typed fast, or on a busy machine, the next characters land first:
"lemon", five Backspaces and "normalized" became "lemonnorma" in the chat list's search box
(Textual issue #6605). These widgets run their own bindings where they take the key, as the
open fix upstream does; what runs is what the app would have run, just not later.
"""

from __future__ import annotations

from textual import events
from textual.widget import Widget
from textual.widgets import Input, TextArea


async def run_own_binding(widget: Widget, event: events.Key) -> bool:
    """Run ``widget``'s own binding for ``event`` now; True when one ran. Priority bindings were
    checked before the key reached the widget, so only the others are the widget's here."""
    own = getattr(widget, "_bindings", None)  # Textual's own map (private): without it, Textual's order
    for binding in own.key_to_bindings.get(event.key, ()) if own is not None else ():
        if not binding.priority and await widget.app.run_action(binding.action, widget):
            event.stop()
            event.prevent_default()
            return True
    return False


class KeysInOrder:
    """Runs the widget's own binding for a key before the widget's class handles it. Textual calls
    each class's ``_on_key`` along the MRO until one prevents the default, so Input's or
    TextArea's own handler runs next when no binding took the key."""

    async def _on_key(self, event: events.Key) -> None:
        await run_own_binding(self, event)


class OrderedInput(KeysInOrder, Input):
    """An Input whose Backspace, arrows and other bound keys keep their place among typed ones."""


class OrderedTextArea(KeysInOrder, TextArea):
    """A TextArea whose bound keys keep their place among typed ones."""
