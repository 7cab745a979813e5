"""``duetto chats``: a user's conversations from the shell: list, show, export and remove them."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.store.conversations import (
    DEFAULT_USER,
    Conversation,
    delete_conversation,
    list_conversations,
    list_messages,
    named_user,
    owned_conversation,
)
from duetto.store.database import open_database

USER_OPTION = click.option("--user", default=DEFAULT_USER, show_default=True, help="Whose conversations.")
SPEAKERS = {"user": "You", "assistant": "duetto", "system": "System"}


@click.group()
def chats() -> None:
    """Your conversations (the chat app's and `duetto ask -c`'s): list, show, export, remove."""


@chats.command("list")
@USER_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def list_command(user: str, as_json: bool) -> None:
    """List conversations, most recently active first."""
    db = open_database()
    conversations = list_conversations(db, named_user(db, user))
    rows = [{**_summary(conversation), "messages": len(list_messages(db, conversation.id))}
            for conversation in conversations]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    if not rows:
        stderr_console.print("no conversations yet: `duetto` opens the chat app, `duetto ask -c` starts one")
        return
    table = Table("id", "title", "messages", "last active")
    for row in rows:
        table.add_row(str(row["id"]), row["title"], str(row["messages"]), row["updated_at"][:16].replace("T", " "))
    stdout_console.print(table)


@chats.command("show")
@click.argument("chat_id", type=int, metavar="ID")
@USER_OPTION
@click.option(
    "--json", "as_json", is_flag=True, help="Print the conversation as JSON (what export --format json writes)."
)
def show(chat_id: int, user: str, as_json: bool) -> None:
    """Print conversation ID as Markdown (or JSON)."""
    db = open_database()
    conversation = owned_conversation(db, chat_id, named_user(db, user))
    if as_json:
        print_json(_as_json(db, conversation, user))
    else:
        click.echo(_as_markdown(db, conversation), nl=False)


@chats.command("export")
@click.argument("chat_id", type=int, metavar="ID")
@USER_OPTION
@click.option("--format", "form", type=click.Choice(["md", "json"]), default="md", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (default: standard output).")  # fmt: skip
def export(chat_id: int, user: str, form: str, output: Path | None) -> None:
    """Export conversation ID as Markdown or JSON (every message, with each reply's stats in JSON)."""
    db = open_database()
    conversation = owned_conversation(db, chat_id, named_user(db, user))
    if form == "json":
        text = json.dumps(_as_json(db, conversation, user), indent=2, ensure_ascii=False) + "\n"
    else:
        text = _as_markdown(db, conversation)
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.partial")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(output)  # never a half-written export under the final name
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    stderr_console.print(f"exported conversation {chat_id} to {output}")


@chats.command("rm")
@click.argument("chat_id", type=int, metavar="ID")
@USER_OPTION
def remove(chat_id: int, user: str) -> None:
    """Remove conversation ID with its messages."""
    db = open_database()
    owned_conversation(db, chat_id, named_user(db, user))
    delete_conversation(db, chat_id)
    stderr_console.print(f"removed conversation {chat_id}")


def _summary(conversation: Conversation) -> dict:
    return {"id": conversation.id, "title": conversation.title, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at}  # fmt: skip


def _as_json(db, conversation: Conversation, user: str) -> dict:
    messages = [
        {"role": message.role, "content": message.content, "stats": message.stats, "created_at": message.created_at}
        for message in list_messages(db, conversation.id)
    ]
    return {**_summary(conversation), "user": user, "messages": messages}


def _as_markdown(db, conversation: Conversation) -> str:
    parts = [f"# {conversation.title}\n"]
    for message in list_messages(db, conversation.id):
        parts.append(f"**{SPEAKERS.get(message.role, message.role)}:**\n\n{message.content.rstrip()}\n")
    return "\n".join(parts)
