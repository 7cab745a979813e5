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
        that the speed, the acceptance and the user stay in view (the end of a line is cut)."""
        line = self.line(compact=False)
        room = self.content_size.width
        return line if not room or len(line) <= room else self.line(compact=True)

    def line(self, compact: bool) -> str:
        """The bar's text; compact names the target model alone and drops the labels' words."""
        models = self.models
        if compact and " → " in models:  # "draft → target (target on …)": the target is what answers
            models = models.split(" → ", 1)[1]
        speed = f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second is not None else "– tok/s"
        rate = f"{self.acceptance:.0%}" if self.acceptance is not None else "–"
        accepted = f"acc {rate}" if compact else f"accepted {rate}"
        # What the engine is doing comes first after the models: on a narrow terminal the end is cut.
        mode = self.mode if compact else f"mode {self.mode}"
        if self.decoded_by_server:
            mode = "mode: the server's"  # said whole, even compact: a bare word would not tell what it is
        parts = [models, *([self.state] if self.state else []), mode, speed, accepted]
        if self.compression:
            parts.append(self.compression)
        if self.user_name:
            parts.append(f"user {self.user_name}")
        return " │ ".join(parts)
