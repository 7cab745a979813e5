"""``duetto chat`` (also plain ``duetto``): the Textual chat app."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from duetto.app.decoding_options import DecodingOptions, decoding_options
from duetto.app.engine_loader import build_decoder, model_paths
from duetto.engine.manifest import load_manifest


def short_name(path: Path) -> str:
    """The manifest's name for a model file (e.g. qwen2.5-coder-1.5b), else the file's stem."""
    for spec in load_manifest().models.values():
        if spec.file == path.name:
            return spec.name
    return path.stem


@click.command()
@click.option("--mode", type=click.Choice(["target", "exact", "fast"]), default="exact", show_default=True)
@decoding_options
@click.option("--max-tokens", type=click.IntRange(1, 32768), default=1024, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 5.0), default=0.0, show_default=True)
@click.option("--user", "user_name", default="default", show_default=True, help="Whose chats to open.")
def chat(mode: str, decoding: DecodingOptions, max_tokens: int, temperature: float, user_name: str) -> None:
    """Open the chat app (models are fetched first if missing; F1 inside lists the keys)."""
    from duetto.app.tui.app import ChatConfig, DuettoApp
    from duetto.store.conversations import validate_user_name

    validate_user_name(user_name)
    target_path, draft_path = model_paths(decoding.profile, decoding.target, decoding.draft_model, use_draft=True)
    label = f"{short_name(draft_path)} → {short_name(target_path)}" if draft_path else short_name(target_path)
    settings = decoding.settings(
        mode if draft_path or mode != "fast" else "exact",
        has_draft=draft_path is not None,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    factory = functools.partial(
        build_decoder, target_path, draft_path, context_length=decoding.context_length, threads=decoding.threads
    )
    DuettoApp(ChatConfig(engine_factory=factory, models_label=label, settings=settings, user_name=user_name)).run()
