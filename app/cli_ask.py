"""``duetto ask``: one question, or an interactive chat when no question is given.

The profile's target model answers alone for now (mode ``target``); the models are
fetched on first use.
"""

from __future__ import annotations

import sys

import click

from duetto.app.console import RichByteProgress, print_json, stderr_console
from duetto.app.model_catalog import resolve_model_path
from duetto.engine.chat_model import ChatMessage, ChatModel, GenerationSettings
from duetto.engine.errors import EngineError
from duetto.engine.fetch import fetch_model, is_present, model_path
from duetto.engine.manifest import load_manifest
from duetto.engine.stats import ReplyStats
from duetto.store import locations
from duetto.store.database import open_database

SYSTEM_PROMPT = "You are duetto, a concise and helpful assistant running offline on the user's computer."


def _target_path(profile_name: str, target: str | None):
    """The target model's file, fetching the profile's models first if they are missing."""
    manifest = load_manifest()
    if target:
        return resolve_model_path(target, manifest, open_database(), locations.models_dir())
    profile = manifest.profile(profile_name)
    spec = manifest.model(profile.target)
    models_dir = locations.models_dir()
    if not is_present(spec, models_dir):
        stderr_console.print(f"first use of profile {profile_name!r}: fetching its models into {models_dir}")
        with RichByteProgress() as progress:
            for missing in manifest.profile_models(profile_name):
                fetch_model(missing, models_dir, progress)
    return model_path(spec, models_dir)


def _stream_reply(model: ChatModel, messages: list[ChatMessage], settings: GenerationSettings, echo: bool):
    """Stream one reply to stdout (when ``echo``); returns (text, stats)."""
    pieces: list[str] = []
    stats: ReplyStats | None = None
    for item in model.stream(model.chat_prompt_tokens(messages), settings):
        if isinstance(item, ReplyStats):
            stats = item
        else:
            pieces.append(item)
            if echo:
                sys.stdout.write(item)
                sys.stdout.flush()
    assert stats is not None, "ChatModel.stream always ends with stats"
    return "".join(pieces), stats


def _stats_line(stats: ReplyStats) -> str:
    return (
        f"{stats.tokens} tokens, {stats.tokens_per_second:.1f} tok/s, "
        f"first token {stats.ttft_seconds:.2f} s, prompt {stats.prompt_tokens} tokens, mode {stats.mode}"
    )


@click.command()
@click.argument("prompt", required=False)
@click.option("--profile", default=None, help="Model profile (see `duetto models list`; default: default).")
@click.option("--target", default=None, metavar="MODEL|PATH", help="Answer with this model instead of the profile's.")
@click.option("--max-tokens", type=click.IntRange(1, 32768), default=512, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 5.0), default=0.0, show_default=True, help="0 is greedy.")
@click.option("--seed", type=int, default=None, help="Seed for sampling (temperature > 0).")
@click.option("--context", "context_length", type=click.IntRange(256, 131072), default=4096, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"text": ..., "stats": {...}} on stdout.')
def ask(
    prompt: str | None,
    profile: str | None,
    target: str | None,
    max_tokens: int,
    temperature: float,
    seed: int | None,
    context_length: int,
    as_json: bool,
) -> None:
    """Ask PROMPT and stream the answer; with no PROMPT, chat interactively (Ctrl-D to quit).

    PROMPT '-' reads the question from stdin.
    """
    if prompt == "-":
        prompt = sys.stdin.read()
    if prompt is not None and not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    if prompt is None and as_json:
        raise click.UsageError("--json needs a PROMPT (interactive chat prints text)")
    path = _target_path(profile or load_manifest().default_profile, target)
    settings = GenerationSettings(max_tokens=max_tokens, temperature=temperature, seed=seed)
    with stderr_console.status(f"loading {path.name}"):
        model = ChatModel(path, context_length=context_length)
    messages: list[ChatMessage] = [{"role": "system", "content": SYSTEM_PROMPT}]

    if prompt is not None:
        messages.append({"role": "user", "content": prompt})
        text, stats = _stream_reply(model, messages, settings, echo=not as_json)
        if as_json:
            print_json({"text": text, "stats": stats.as_dict()})
        else:
            sys.stdout.write("\n")
            stderr_console.print(f"[dim]{_stats_line(stats)}[/dim]")
        return

    stderr_console.print(f"[bold]duetto[/bold] chat with {path.name}. Ctrl-D quits, Ctrl-C stops a reply.")
    while True:
        try:
            question = input("\n> ")
        except EOFError:
            sys.stdout.write("\n")
            return
        if not question.strip():
            continue
        messages.append({"role": "user", "content": question})
        try:
            text, stats = _stream_reply(model, messages, settings, echo=True)
        except KeyboardInterrupt:
            messages.pop()
            stderr_console.print("\n[dim](reply stopped)[/dim]")
            continue
        except EngineError as error:
            messages.pop()
            stderr_console.print(f"\nduetto: error: {error}")
            continue
        messages.append({"role": "assistant", "content": text})
        sys.stdout.write("\n")
        stderr_console.print(f"[dim]{_stats_line(stats)}[/dim]")
