"""``duetto chat`` (also plain ``duetto``): the Textual chat app."""

from __future__ import annotations

import click
from click.core import ParameterSource

from duetto.app.cli.options import DecodingOptions, decoding_options, mode_option, reply_options
from duetto.app.core.settings import CHAT_MAX_TOKENS
from duetto.engine.decoder import DecodeSettings


@click.command()
@mode_option()
@decoding_options
@reply_options(max_tokens=CHAT_MAX_TOKENS)
@click.option("--user", "user_name", default="default", show_default=True, help="Whose chats to open.")
@click.pass_context
def chat(
    context: click.Context, mode: str, decoding: DecodingOptions, max_tokens: int, temperature: float, user_name: str
) -> None:
    """Open the chat app (models are fetched first if missing; F1 inside lists the keys).

    The profile's saved settings (F3 in the app) replace these options' defaults; an option
    given on the command line wins for this session.
    """
    from duetto.app.tui.factory import chat_app

    given = {
        name
        for name in DecodeSettings.__dataclass_fields__
        if name in context.params and context.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }
    chat_app(
        decoding.settings(mode, max_tokens=max_tokens, temperature=temperature),
        profile=decoding.profile,
        target=decoding.target,
        draft_model=decoding.draft_model,
        user_name=user_name,
        command_line_settings=frozenset(given),
        context_length=decoding.context_length,
        threads=decoding.threads,
        window_tokens=decoding.window_tokens,
    ).run()
