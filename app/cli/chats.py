"""``duetto chats``: a user's conversations from the shell: list, search, show, export, import, remove."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from duetto.app.cli.console import print_json, stderr_console, stdout_console
from duetto.app.core.chat_export import conversation_json, conversation_markdown, import_json, write_whole
from duetto.app.core.plugins import forget_conversation_readings
from duetto.store.conversations import (
    DEFAULT_USER,
    SNIPPET_MARKS,
    Conversation,
    delete_conversation,
    list_conversations,
    list_messages,
    named_user,
    owned_conversation,
    search_messages,
)
from duetto.store.database import open_database

USER_OPTION = click.option("--user", default=DEFAULT_USER, show_default=True, help="Whose conversations.")


@click.group()
def chats() -> None:
    """Your conversations (the chat app's and `duetto ask -c`'s): list, search, show, export, import, remove."""


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
        print_json(conversation_json(db, conversation, user))
    else:
        click.echo(conversation_markdown(db, conversation), nl=False)


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
        text = json.dumps(conversation_json(db, conversation, user), indent=2, ensure_ascii=False) + "\n"
    else:
        text = conversation_markdown(db, conversation)
    if output is None:
        click.echo(text, nl=False)
        return
    write_whole(output, text)
    stderr_console.print(f"exported conversation {chat_id} to {output}")


@chats.command("search")
@click.argument("words", nargs=-1, required=True)
@USER_OPTION
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="At most this many hits.")
@click.option("--json", "as_json", is_flag=True, help='Print [{"chat","title","message","position","role","snippet"}].')
def search(words: tuple[str, ...], user: str, limit: int, as_json: bool) -> None:
    """Find messages holding every one of WORDS (full-text, the last word as a prefix), best first.

    Each line names the chat's ID and the message's place in it (`chats show ID` prints them in
    that order). Exits 1 when no message matches, as grep does; with --json it prints [] and
    exits 0."""
    db = open_database()
    hits = search_messages(db, named_user(db, user), " ".join(words), limit)
    chats_messages: dict[int, list[int]] = {}
    for hit in hits:
        if hit.conversation.id not in chats_messages:
            chats_messages[hit.conversation.id] = [message.id for message in list_messages(db, hit.conversation.id)]
    # A hit whose message went between the two reads (a turn rewritten by another duetto) is left out.
    hits = [hit for hit in hits if hit.message_id in chats_messages[hit.conversation.id]]
    positions = [chats_messages[hit.conversation.id].index(hit.message_id) + 1 for hit in hits]
    if as_json:
        print_json([{"chat": hit.conversation.id, "title": hit.conversation.title, "message": hit.message_id,
                     "position": position, "role": hit.role, "snippet": hit.marked("«", "»")}
                    for hit, position in zip(hits, positions, strict=True)])  # fmt: skip
        return
    if not hits:
        stderr_console.print(f"no message holds {' '.join(words)!r}")
        raise SystemExit(1)
    for hit, position in zip(hits, positions, strict=True):
        snippet = escape(hit.snippet).replace(SNIPPET_MARKS[0], "[bold]").replace(SNIPPET_MARKS[1], "[/bold]")
        of = len(chats_messages[hit.conversation.id])
        stdout_console.print(f"[cyan]{hit.conversation.id}[/cyan] {escape(hit.conversation.title)} "
                             f"[dim]({hit.role}, message {position} of {of})[/dim]: {snippet}",
                             soft_wrap=True)  # one line a hit, whatever the width: for grep  # fmt: skip
    stderr_console.print("open one: duetto chats show ID, or duetto ask --chat ID 'a follow-up'")


@chats.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@USER_OPTION
@click.option("--json", "as_json", is_flag=True, help='Print {"id","title","messages"}.')
def import_command(path: Path, user: str, as_json: bool) -> None:
    """Restore a conversation from PATH, a `chats export --format json` file, as a new conversation."""
    db = open_database()
    conversation = import_json(db, named_user(db, user), path)
    count = len(list_messages(db, conversation.id))
    if as_json:
        print_json({"id": conversation.id, "title": conversation.title, "messages": count})
        return
    stderr_console.print(f"imported {path} as conversation {conversation.id} ({count} messages)")


@chats.command("rm")
@click.argument("chat_id", type=int, metavar="ID")
@USER_OPTION
def remove(chat_id: int, user: str) -> None:
    """Remove conversation ID with its messages."""
    db = open_database()
    owned_conversation(db, chat_id, named_user(db, user))
    forget_conversation_readings(db, chat_id)  # the readings a plugin kept of its messages hold them
    delete_conversation(db, chat_id)
    stderr_console.print(f"removed conversation {chat_id}")


def _summary(conversation: Conversation) -> dict:
    return {"id": conversation.id, "title": conversation.title, "created_at": conversation.created_at,
            "updated_at": conversation.updated_at}  # fmt: skip
