"""The multi-line prompt box: Enter sends, Ctrl+J (or Shift/Alt+Enter) starts a new line, Up and
Down on the first and last line walk through earlier prompts (as a shell's history does)."""

from __future__ import annotations

from textual import events
from textual.message import Message

from duetto.app.tui.keys_in_order import OrderedTextArea

NEWLINE_KEYS = ("ctrl+j", "shift+enter", "alt+enter")


class PromptInput(OrderedTextArea):
    """A TextArea whose Enter key submits; pasted text (even multi-line) is only inserted, never sent."""

    DEFAULT_CSS = """
    PromptInput {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: round $accent;
    }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prompt_history: list[str] = []
        """Earlier prompts, oldest first."""
        self._history_index: int | None = None
        """Where Up/Down are in the history; None: the box holds the user's own draft."""
        self._draft = ""

    def set_history(self, prompts: list[str]) -> None:
        self.prompt_history = list(dict.fromkeys(reversed(prompts)))[::-1]  # the latest of repeats stays, in order
        self._history_index = None

    def remember(self, prompt: str) -> None:
        if prompt in self.prompt_history:
            self.prompt_history.remove(prompt)
        self.prompt_history.append(prompt)
        self._history_index = None

    def _walk_history(self, step: int) -> bool:
        """Show the prompt ``step`` away in the history (-1: older); False at either end."""
        if not self.prompt_history:
            return False
        if self._history_index is None:
            if step > 0:
                return False
            self._draft = self.text
            index = len(self.prompt_history) - 1
        else:
            index = self._history_index + step
        if index < 0:
            return False
        if index >= len(self.prompt_history):
            self._history_index = None
            self.text = self._draft
        else:
            self._history_index = index
            self.text = self.prompt_history[index]
        self.move_cursor(self.document.end)
        return True

    class Submitted(Message):
        """The user pressed Enter on a non-empty prompt."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            if self.text.strip():
                self.post_message(self.Submitted(self.text))
                self.remember(self.text)
                self.clear()
            return
        if event.key == "up" and self.cursor_location[0] == 0 and self._walk_history(-1):
            event.stop()
            event.prevent_default()
            return
        if event.key == "down" and self.cursor_location[0] == self.document.line_count - 1 and self._walk_history(1):
            event.stop()
            event.prevent_default()
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        if event.is_printable or event.key in ("backspace", "delete"):
            self._history_index = None  # an edited recalled prompt is the user's draft now
        await super()._on_key(event)
