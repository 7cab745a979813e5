"""Measure the chat app's key-press latency while a reply is generated with the real default pair.

Not a test (no timing assertion belongs in the suite); run by hand, numbers in docs/BENCHMARKS.md:

    DUETTO_MODELS=~/.cache/duetto-tests/models python3 tests/app/tui_latency.py [exact|fast|target]

The app runs headless under Textual's Pilot (the same event loop, widgets and rendering as in a
terminal, without the terminal's own drawing). Once the reply starts streaming, a letter is pressed
every 0.25 s until the reply ends; a key's latency is the time from the creation of its Key event
(Textual stamps every message) to the prompt box handling it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from duetto.app.engine_loader import build_decoder, chosen_model_names, resolve_paths
from duetto.app.tui.app import ChatConfig, DuettoApp
from duetto.app.tui.chat_view import MessageBlock
from duetto.app.tui.prompt_input import PromptInput
from duetto.app.tui.status_bar import StatusBar
from duetto.engine.decoder import DecodeSettings

PROMPT = "Write a Python function that parses an ISO date, with a docstring and tests."
PROBE_KEY = "x"


class TimedPromptInput(PromptInput):
    latencies: list[float] = []

    async def _on_key(self, event) -> None:
        if event.key == PROBE_KEY:
            self.latencies.append(time.monotonic() - event.time)
        await super()._on_key(event)


async def measure(mode: str) -> None:
    target_name, draft_name = chosen_model_names(None, None, None, True)
    target_path, draft_path = resolve_paths(target_name, draft_name)
    config = ChatConfig(
        engine_factory=lambda user_name: build_decoder(target_path, draft_path, context_length=4096),
        models_label="default pair",
        settings=DecodeSettings(mode=mode, max_tokens=200),
        database_path=Path(tempfile.mkdtemp()) / "chat.db",
    )
    app = DuettoApp(config)
    async with app.run_test(size=(120, 30)) as pilot:
        await app.query_one(PromptInput).remove()
        await app.query_one("#chat-column").mount(TimedPromptInput(id="prompt"))
        while app.decoder is None:
            await pilot.pause(0.1)
        app.query_one(PromptInput).text = PROMPT
        app.query_one(PromptInput).focus()
        await pilot.press("enter")
        while not (len(app.query(MessageBlock)) == 2 and list(app.query(MessageBlock))[1].text):
            await pilot.pause(0.05)
        started = time.monotonic()
        while app.generating:
            await pilot.press(PROBE_KEY)
            await pilot.pause(0.25)
        seconds = time.monotonic() - started
        speed = app.query_one(StatusBar).tokens_per_second
    during = TimedPromptInput.latencies[:-1]  # the last press may come after the reply ended
    print(
        f"mode {mode}: {len(during)} key presses in {seconds:.1f} s of streaming ({speed:.1f} tok/s); "
        f"latency median {statistics.median(during) * 1000:.1f} ms, "
        f"95th percentile {statistics.quantiles(during, n=20)[-1] * 1000:.1f} ms, max {max(during) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(measure(sys.argv[1] if len(sys.argv) > 1 else "exact"))
