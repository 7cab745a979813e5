"""The one way a chat app is built, for ``duetto chat`` and for the tests alike.

From what a user names (a profile, or model names or files), it finds the models (those still to
fetch go to the app's fetch screen), checks the names before the screen opens, and gives the app
an engine factory that loads the pair for a profile, its plugin included.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from duetto.app.core.models import (
    Engine,
    ModelPair,
    available_pairs,
    chosen_model_names,
    load_engine,
    missing_models,
    resolve_paths,
)
from duetto.app.core.remote import build_remote_engine, remote_endpoint
from duetto.app.core.settings import CHAT_MAX_TOKENS
from duetto.app.tui.app import DuettoApp
from duetto.app.tui.config import ChatConfig
from duetto.engine.decoder import Decoder, DecodeSettings
from duetto.store.conversations import DEFAULT_USER, validate_user_name


def chat_app(
    settings: DecodeSettings | None = None,
    *,
    profile: str | None = None,
    target: str | None = None,
    draft_model: str | None = None,
    user_name: str = DEFAULT_USER,
    command_line_settings: frozenset[str] = frozenset(),
    context_length: int | None = None,
    threads: int | None = None,
    window_tokens: int | None = None,
    database_path: Path | None = None,
    decoder_class: type[Decoder] = Decoder,
) -> DuettoApp:
    """The chat app over the profile's pair (or the models named); ``decoder_class`` lets a test
    pace the replies. An unknown name or a moved file fails here, in one line, before the screen."""
    validate_user_name(user_name)
    settings = settings or DecodeSettings(max_tokens=CHAT_MAX_TOKENS)
    endpoint = remote_endpoint(target, database_path)
    if endpoint is not None:  # a remote target: the profile's small model writes its prompts
        target_name, draft_name = endpoint.name, draft_model or chosen_model_names(profile, None, None, True)[1]
        missing = missing_models([draft_name])
    else:
        target_name, draft_name = chosen_model_names(profile, target, draft_model, True)
        missing = missing_models([target_name, draft_name])
        if not missing:
            resolve_paths(target_name, draft_name)
    pair = ModelPair(target_name, draft_name)
    if settings.mode == "fast" and draft_name is None:
        settings = replace(settings, mode="exact")

    def engine_for_pair(user: str, chosen: ModelPair) -> Engine:
        """The engine for ``user`` on ``chosen``: the shared models, the target carrying the user's plugin if any."""
        remote = remote_endpoint(chosen.target, database_path)
        if remote is not None:
            draft_path = resolve_paths(chosen.draft, None)[0] if chosen.draft else None
            return build_remote_engine(remote, draft_path, threads=threads, user=user, database_path=database_path)
        target_path, draft_path = resolve_paths(chosen.target, chosen.draft)
        return load_engine(
            target_path, draft_path, context_length=context_length, threads=threads, user=user,
            database_path=database_path, decoder_class=decoder_class,
        )  # fmt: skip

    def engine_for(user: str) -> Engine:
        return engine_for_pair(user, pair)

    return DuettoApp(
        ChatConfig(
            engine_factory=engine_for,
            models_label=pair.label,
            settings=settings,
            command_line_settings=command_line_settings,
            user_name=user_name,
            engine_per_user=True,
            database_path=database_path,
            missing_models=tuple(missing),
            window_tokens=window_tokens,
            pair=pair,
            pair_engine_factory=engine_for_pair,
            pair_choices=available_pairs,
        )
    )
