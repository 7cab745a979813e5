"""The ``duetto`` command: a click group whose subcommands live in their own modules.

Errors a user can act on (EngineError, StoreError, a disk that is full or read-only) become
one line on stderr and exit status 1; usage errors become one line too (click's own are three), with status 2.
Tracebacks are for bugs only.
"""

from __future__ import annotations

import sqlite3
import sys
from importlib.metadata import version

import click

from duetto.app.bench.bench import bench
from duetto.app.bench.bench_chat import bench_chat
from duetto.app.bench.bench_docs import bench_docs
from duetto.app.bench.bench_plugin import bench_plugin
from duetto.app.bench.bench_remote import bench_remote
from duetto.app.bench.bench_serve import bench_serve
from duetto.app.cli.ask import ask
from duetto.app.cli.chat import chat
from duetto.app.cli.chats import chats
from duetto.app.cli.docs import docs
from duetto.app.cli.models import models
from duetto.app.cli.plugin import plugin
from duetto.app.cli.serve import serve
from duetto.app.cli.users import users
from duetto.engine.errors import EngineError
from duetto.store.errors import StoreError, storage_failure

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class DuettoGroup(click.Group):
    """Turns the errors a user can act on into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx is not None else "duetto"
            click.echo(f"{command}: error: {error.format_message()} (see: {command} --help)", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:  # a failure the command saw coming (a port in use): its own words
            click.echo(f"duetto: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except (EngineError, StoreError) as error:
            click.echo(f"duetto: error: {error}", err=True)
            sys.exit(EXIT_ERROR)
        except (OSError, sqlite3.Error) as error:
            # A disk that is full or read-only under a write that is not the store's (a plugin, an
            # export); anything else is a bug and keeps its traceback.
            failure = storage_failure(error, getattr(error, "filename", None) or "a file")
            if failure is None:
                raise
            click.echo(f"duetto: error: {failure}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("duetto: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=DuettoGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("duetto"), "--version", "-V", prog_name="duetto")
@click.pass_context
def main(context: click.Context) -> None:
    """duetto: an offline assistant in your terminal, on two local GGUF models.

    With no command, opens the chat app (`duetto chat`).

    A small draft model writes and a large target model checks its tokens in one
    batched pass. Data lives in $DUETTO_HOME, model files in $DUETTO_MODELS
    (see `duetto models list` for the paths in use).
    """
    if context.invoked_subcommand is None:
        context.invoke(chat)


main.add_command(models)
main.add_command(ask)
main.add_command(bench)
main.add_command(bench_docs)
main.add_command(bench_chat)
main.add_command(bench_serve)
main.add_command(bench_remote)
main.add_command(bench_plugin)
main.add_command(chat)
main.add_command(chats)
main.add_command(users)
main.add_command(plugin)
main.add_command(docs)
main.add_command(serve)
