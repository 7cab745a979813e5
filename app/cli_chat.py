"""``duetto chat`` (also plain ``duetto``): the Textual chat app."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from duetto.app.decoding_options import DecodingOptions, decoding_options
from duetto.app.engine_loader import build_decoder, chosen_model_names, missing_models, reader_for, resolve_paths
from duetto.engine.decoder import DecodeSettings
from duetto.engine.manifest import load_manifest


def short_name(name_or_path: str) -> str:
    """A manifest or imported model's name as given; a path's file stem."""
    if name_or_path in load_manifest().models:
        return name_or_path
    return Path(name_or_path).stem if name_or_path.endswith(".gguf") else name_or_path


@click.command()
@click.option("--mode", type=click.Choice(["target", "exact", "fast"]), default="exact", show_default=True)
@decoding_options
@click.option("--max-tokens", type=click.IntRange(1, 32768), default=1024, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 5.0), default=0.0, show_default=True)
@click.option("--user", "user_name", default="default", show_default=True, help="Whose chats to open.")
@click.pass_context
def chat(
    context: click.Context, mode: str, decoding: DecodingOptions, max_tokens: int, temperature: float, user_name: str
) -> None:
    """Open the chat app (models are fetched first if missing; F1 inside lists the keys).

    The profile's saved settings (F3 in the app) replace these options' defaults; an option
    given on the command line wins for this session.
    """
    from duetto.app.tui.app import ChatConfig, DuettoApp
    from duetto.store.conversations import validate_user_name

    validate_user_name(user_name)
    target_name, draft_name = chosen_model_names(decoding.profile, decoding.target, decoding.draft_model, True)
    missing = missing_models([target_name, draft_name])
    if not missing:
        resolve_paths(target_name, draft_name)  # an unknown name or a moved file fails here, in one line
    label = f"{short_name(draft_name)} → {short_name(target_name)}" if draft_name else short_name(target_name)
    settings = decoding.settings(
        mode if draft_name or mode != "fast" else "exact",
        has_draft=draft_name is not None,
        max_tokens=max_tokens,
        temperature=temperature,
    )

    def load_engine(profile: str):
        """The engine for ``profile``: the shared models, the target carrying the user's plugin if any."""
        target_path, draft_path = resolve_paths(target_name, draft_name)
        return build_decoder(
            target_path, draft_path, context_length=decoding.context_length, threads=decoding.threads, user=profile
        )

    def load_reader():
        """The small model (the target when there is none) reading documents, with its identity."""
        target_path, draft_path = resolve_paths(target_name, draft_name)
        return reader_for(draft_path or target_path, threads=decoding.threads)

    given = {
        name
        for name in DecodeSettings.__dataclass_fields__
        if name in context.params and context.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }
    config = ChatConfig(
        engine_factory=load_engine,
        models_label=label,
        settings=settings,
        command_line_settings=frozenset(given),
        user_name=user_name,
        engine_per_user=True,
        missing_models=tuple(missing),
        reader_factory=load_reader,
        window_tokens=decoding.window_tokens,
    )
    DuettoApp(config).run()
