"""The line at the bottom: model pair, mode, live tok/s and acceptance, the user."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    models: reactive[str] = reactive("loading models…")
    """The draft and target model names."""
    mode: reactive[str] = reactive("exact")
    decoded_by_server: reactive[bool] = reactive(False)
    """A remote target's server decodes (and drafts, if it does) its own way: duetto's mode then
    means nothing and is not shown."""
    tokens_per_second: reactive[float | None] = reactive(None)
    acceptance: reactive[float | None] = reactive(None)
    compression: reactive[str] = reactive("")
    """After a document answer: document tokens vs tokens the large model read; shown when set."""
    user_name: reactive[str] = reactive("")
    """The user whose chats and settings are open."""
    state: reactive[str] = reactive("")
    """What the engine is doing: generating, idle, an error."""

    def render(self) -> str:
        """The whole line if it fits the bar; on a narrow terminal (80 columns) a compact one, so
        that the speed, the acceptance and the user stay in view (the end of a line is cut).

        Which one is decided on the line at its widest (writing, a three-digit speed), not on the
        line of the moment: between about 97 and 107 columns the bar went compact at every reply
        and back after it."""
        room = self.content_size.width
        widest = self.line(compact=False, widest=True)
        return self.line(compact=bool(room) and len(widest) > room)

    def line(self, compact: bool, widest: bool = False) -> str:
        """The bar's text; compact names the target model alone, drops the labels' words and puts
        the document numbers last. ``widest``: as wide as the line gets while a reply is written."""
        models = self.models
        if compact and " → " in models:  # "[loading ]draft → target[…]": the target is what answers
            head, target = models.split(" → ", 1)
            models = f"loading {target}" if head.startswith("loading ") else target
        state = self.state
        if widest and len(state) < len(WRITING):
            state = WRITING
        tokens_per_second = 999.9 if widest else self.tokens_per_second
        speed = f"{tokens_per_second:.1f} tok/s" if tokens_per_second is not None else "– tok/s"
        acceptance = 1.0 if widest else self.acceptance
        rate = f"{acceptance:.0%}" if acceptance is not None else "–"
        accepted = f"acc {rate}" if compact else f"accepted {rate}"
        # What the engine is doing comes first after the models: on a narrow terminal the end is cut.
        mode = self.mode if compact else f"mode {self.mode}"
        if self.decoded_by_server:
            mode = "mode: the server's"  # said whole, even compact: a bare word would not tell what it is
        parts = [models, *([state] if state else []), mode, speed, accepted]
        user = [f"user {self.user_name}"] if self.user_name else []
        compression = [self.compression] if self.compression else []
        parts += [*user, *compression] if compact else [*compression, *user]
        return " │ ".join(parts)


WRITING = "writing…"
"""The state while a reply is written (the app sets it), the usual widest."""
