"""The options ``ask``, ``bench`` and ``chat`` share, gathered into one value.

Click passes options as keyword arguments; ``decoding_options`` takes these out and hands the
command a single ``DecodingOptions`` (argument ``decoding``), which also builds DecodeSettings, so
the three commands cannot drift apart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import click

from duetto.app.core.settings import MAX_REPLY_TOKENS, MAX_TEMPERATURE
from duetto.engine.decoder import DecodeSettings
from duetto.engine.drafters import DRAFTER_CHOICES
from duetto.engine.stats import MODES, Mode


@dataclass(frozen=True)
class DecodingOptions:
    profile: str | None
    target: str | None
    draft_model: str | None
    drafter: str
    fallback_threshold: float
    rollback_threshold: float
    max_draft_run: int
    threads: int | None
    context_length: int | None
    """None: the target's trained length, as far as memory affords (engine/model_session.py)."""
    window_tokens: int | None
    """None: the whole context (a conversation folds only when the context is full)."""

    def uses_draft_model(self, mode: str) -> bool:
        """Whether ``mode`` with these options may ask the draft model (fast mode, or exact mode
        with the ``auto`` or ``model`` drafter): otherwise it is not loaded at all."""
        return mode == "fast" or (mode == "exact" and self.drafter in ("auto", "model"))

    def settings(self, mode: Mode, **overrides) -> DecodeSettings:
        """DecodeSettings for ``mode`` (``auto`` drafts with whatever the engine has)."""
        return DecodeSettings(
            mode=mode,
            drafter=self.drafter,
            fallback_threshold=self.fallback_threshold,
            rollback_threshold=self.rollback_threshold,
            max_draft_run=self.max_draft_run,
            **overrides,
        )


def decoding_options(command):
    """Add the shared options to a click command, which receives them as ``decoding``."""

    @functools.wraps(command)
    def with_decoding(*args, **kwargs):
        decoding = DecodingOptions(**{field.name: kwargs.pop(field.name) for field in fields(DecodingOptions)})
        return command(*args, decoding=decoding, **kwargs)

    options = [
        click.option("--profile", default=None, help="Model profile (see `duetto models list`; default: default)."),
        click.option("--target", default=None, metavar="MODEL|PATH", help="Target model instead of the profile's."),
        click.option("--draft-model", default=None, metavar="MODEL|PATH", help="Draft model instead of the profile's."),
        click.option(
            "--draft",
            "drafter",
            type=click.Choice(DRAFTER_CHOICES),
            default=DecodeSettings.drafter,
            show_default=True,
            help="Who drafts in exact mode: auto picks per step by expected gain.",
        ),
        click.option(
            "--fallback",
            "fallback_threshold",
            type=click.FloatRange(0.0, 1.0),
            default=DecodeSettings.fallback_threshold,
            show_default=True,
            help="fast: the target steps in when the draft's top probability is below this.",
        ),
        click.option(
            "--rollback",
            "rollback_threshold",
            type=click.FloatRange(0.0),
            default=DecodeSettings.rollback_threshold,
            show_default=True,
            help="fast: reject a draft token whose cross-entropy under the target exceeds this (nats).",
        ),
        click.option(
            "--max-run",
            "max_draft_run",
            type=click.IntRange(0),
            default=DecodeSettings.max_draft_run,
            show_default=True,
            help="fast: at most this many draft tokens before the target checks (0: no limit).",
        ),
        click.option(
            "--threads",
            type=click.IntRange(1, 256),
            default=None,
            help="CPU threads for llama.cpp (default: every core up to 4, else half of them).",
        ),
        click.option(
            "--context",
            "context_length",
            type=click.IntRange(256, 1048576),
            default=None,
            help="Context window in tokens (default: what the target was trained for, up to what 1/8 of "
            "this machine's memory holds: 32,768 for the default pair on 8 GB or more).",
        ),
        click.option(
            "--window",
            "window_tokens",
            type=click.IntRange(256),
            default=None,
            help="Tokens of a conversation kept whole before its oldest turns are folded into memory "
            "(default: the whole context).",
        ),
    ]
    for option in reversed(options):
        with_decoding = option(with_decoding)
    return with_decoding


def mode_option(default: Mode = DecodeSettings.mode):
    """--mode, its choices the engine's modes."""
    return click.option(
        "--mode",
        type=click.Choice(MODES),
        default=default,
        show_default=True,
        help="target: the large model alone; exact: draft-verify, same output; fast: BiLD, approximate.",
    )


def reply_options(command=None, *, max_tokens: int = DecodeSettings.max_tokens):
    """--max-tokens and --temperature, within the limits the chat settings accept; used bare
    (``@reply_options``) or with another default reply length (``@reply_options(max_tokens=...)``)."""
    if command is None:
        return lambda command: reply_options(command, max_tokens=max_tokens)
    options = [
        click.option(
            "--max-tokens",
            type=click.IntRange(1, MAX_REPLY_TOKENS),
            default=max_tokens,
            show_default=True,
            help="Most tokens in a reply.",
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(0.0, MAX_TEMPERATURE),
            default=DecodeSettings.temperature,
            show_default=True,
            help="0 is greedy.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def reader_and_target_options(command):
    """--profile, --target, --reader and --threads, for the commands that use the large model with
    the small one as a reader (bench-docs, bench-chat)."""
    options = [
        click.option("--profile", default=None, help="Model profile (default: default)."),
        click.option("--target", default=None, metavar="MODEL|PATH", help="Large model instead of the profile's."),
        click.option(
            "--reader", default=None, metavar="MODEL|PATH", help="Small model instead of the profile's draft."
        ),
        click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads (default: all cores)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
