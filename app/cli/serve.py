"""``duetto serve``: the OpenAI-compatible server (app/server/), started from the command line."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import sys
import time
from pathlib import Path

import click

from duetto.app.cli.loading import load_engine, model_paths
from duetto.app.cli.options import DecodingOptions, decoding_options, mode_option, reply_options
from duetto.app.core.models import chosen_model_names
from duetto.app.core.models import load_engine as build_engine
from duetto.app.core.remote import build_remote_engine
from duetto.app.core.settings import MAX_REPLY_TOKENS
from duetto.engine.remote_target import RemoteEndpoint
from duetto.store.conversations import DEFAULT_USER

SERVED_ALIAS = "duetto"
"""A model name every duetto server answers to, whatever its target (for clients configured once)."""


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port.")
@click.option(
    "--api-key",
    envvar="DUETTO_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' on /v1 routes (default: $DUETTO_API_KEY; none: open).",
)
@click.option(
    "--user", default=None, help="Whose plugin and documents serve requests that name no user (default: default)."
)
@click.option(
    "--max-waiting",
    type=click.IntRange(0, 1000),
    default=8,
    show_default=True,
    help="Requests that may wait behind the running one; more get 503 with Retry-After.",
)
@mode_option()
@decoding_options
@reply_options(max_tokens=MAX_REPLY_TOKENS)
def serve(
    host: str,
    port: int,
    api_key: str | None,
    user: str | None,
    max_waiting: int,
    mode: str,
    decoding: DecodingOptions,
    max_tokens: int,
    temperature: float,
) -> None:
    """Serve the models over OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models).

    Point any OpenAI client at the printed URL, for example
    `OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="none")`. Requests run one at a time on
    the models; `prediction` (predicted outputs) drafts from the text the client expects back.
    The options set each request's defaults (a request's own max_tokens, temperature, ... win).
    Ctrl+C stops the server.
    """
    import uvicorn

    from duetto.app.server.api import ServerConfig, create_app
    from duetto.app.server.worker import Engines, engine_key

    default_key = engine_key(user or DEFAULT_USER)  # an unknown user: exit 1, as every command says it
    listening = _bind(host, port)
    if not api_key and not _only_this_machine(listening):
        listening.close()
        raise click.UsageError(
            f"--host {host} takes requests from other machines: give --api-key (or $DUETTO_API_KEY), "
            "or keep the default 127.0.0.1"
        )
    use_draft = decoding.uses_draft_model(mode)
    target_name, _ = chosen_model_names(decoding.profile, decoding.target, decoding.draft_model, use_draft)
    target_path, draft_path = model_paths(decoding.profile, decoding.target, decoding.draft_model, use_draft)
    remote = isinstance(target_path, RemoteEndpoint)
    if mode == "fast" and draft_path is None:
        raise click.UsageError("--mode fast needs a draft model: use a profile with one or --draft-model")
    options = {"threads": decoding.threads, "context_length": decoding.context_length}

    def load(key: str | None):
        if remote:
            return build_remote_engine(target_path, draft_path, threads=decoding.threads)
        return build_engine(target_path, draft_path, user=key, **options)

    engines = Engines(load, per_user=not remote)
    if remote:  # one engine for everyone: a plugin stays here and does not apply to the server (its note says so)
        engines.add(None, load_engine(target_path, draft_path, user=user or DEFAULT_USER, threads=decoding.threads))
    else:
        engines.add(default_key, load_engine(target_path, draft_path, user=default_key, **options))
    config = ServerConfig(
        model_ids=tuple(dict.fromkeys([_model_id(target_name, target_path), SERVED_ALIAS])),
        defaults=decoding.settings(mode, max_tokens=max_tokens, temperature=temperature),
        user=user,
        api_key=api_key or None,
        max_waiting=max_waiting,
        created=int(time.time()),
    )
    app = create_app(config, engines)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a remote target's every request: the log's own line says it
    address, bound_port = listening.getsockname()[:2]
    shown_host = f"[{address}]" if ":" in address else address
    if remote:
        served = f"target on {target_path.name} at {target_path.url}, prompts written by {draft_path.name}; "
        served += "the server decodes"
    else:
        served = target_path.name + (f", drafting with {draft_path.name}" if draft_path else "") + f", mode {mode}"
    click.echo(f"duetto serve: http://{shown_host}:{bound_port}/v1", nl=True)
    click.echo(
        f"models: {', '.join(config.model_ids)} ({served}); "
        f"{'API key required' if config.api_key else 'no API key'}; Ctrl+C stops",
        err=True,
    )
    sys.stdout.flush()

    class StoppingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.stop_generations()  # replies end between two steps, streams with [DONE]
            super().handle_exit(sig, frame)

    server = StoppingServer(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5, lifespan="off")
    )
    try:
        server.run(sockets=[listening])
    except KeyboardInterrupt:
        pass  # uvicorn stops on Ctrl+C, then raises it again; stopping is what was asked for
    finally:
        app.state.worker.shutdown()
        engines.close()
        click.echo("duetto serve: stopped", err=True)


def _model_id(target_name: str, target_path: Path | RemoteEndpoint) -> str:
    """The name requests use for the target: its manifest, import or remote name, or its file's stem."""
    if isinstance(target_path, RemoteEndpoint):
        return target_name
    return target_path.stem if target_name == str(target_path) or target_name.endswith(".gguf") else target_name


def _only_this_machine(listening: socket.socket) -> bool:
    """Whether the socket takes connections from this machine alone (a loopback address)."""
    return ipaddress.ip_address(listening.getsockname()[0].split("%")[0]).is_loopback


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now, so that a taken port is a one-line error before any model loads."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise click.BadParameter(f"cannot resolve {host!r}: {error.strerror}", param_hint="--host") from None
    family, kind, protocol, _, address = infos[0]
    listening = socket.socket(family, kind, protocol)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as error:
        listening.close()
        in_use = error.errno == errno.EADDRINUSE
        reason = "is in use: choose another with --port" if in_use else f"cannot be used: {error.strerror}"
        raise click.ClickException(f"{host}:{port} {reason}") from None
    listening.listen(128)
    listening.set_inheritable(True)
    return listening
