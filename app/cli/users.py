"""``duetto users``: the people who share this machine's models, each with their own plugin."""

from __future__ import annotations

import click
from rich.table import Table

from duetto.app.cli.console import human_bytes, print_json, stderr_console, stdout_console
from duetto.engine.plugin_files import plugin_kind, plugin_size
from duetto.store import locations
from duetto.store.conversations import DEFAULT_USER, add_user, ensure_user, list_users, remove_user
from duetto.store.database import open_database
from duetto.store.errors import StoreError


@click.group()
def users() -> None:
    """Add, list and remove users. Each has their own conversations and plugin weights."""


@users.command("add")
@click.argument("name")
def add(name: str) -> None:
    """Add user NAME (letters, digits, '.', '_' or '-')."""
    add_user(open_database(), name)
    stderr_console.print(
        f"added user {name}; train their plugin with: duetto plugin train --user {name} "
        "--text FILE (or --chats, --docs)"
    )


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def list_command(as_json: bool) -> None:
    """List users and the plugin each has (the default user always exists)."""
    db = open_database()
    ensure_user(db, DEFAULT_USER)
    rows = []
    for user in list_users(db):
        directory = locations.user_dir(user.name)
        rows.append({"name": user.name, "plugin": plugin_kind(directory), "plugin_bytes": plugin_size(directory)})
    if as_json:
        print_json({"default_user": DEFAULT_USER, "users": rows})
        return
    table = Table(title="users", title_justify="left")
    for column in ("name", "plugin", "size"):
        table.add_column(column)
    for row in rows:
        marker = " (default)" if row["name"] == DEFAULT_USER else ""
        size = human_bytes(row["plugin_bytes"]) if row["plugin"] else "-"
        table.add_row(row["name"] + marker, row["plugin"] or "none", size)
    stdout_console.print(table)


@users.command("rm")
@click.argument("name")
def remove(name: str) -> None:
    """Remove user NAME with their conversations and plugin weights."""
    if name == DEFAULT_USER:
        raise StoreError(f"the {DEFAULT_USER!r} user cannot be removed; drop its plugin with: duetto plugin rm")
    remove_user(open_database(), name)
    stderr_console.print(f"removed user {name}, their conversations and their plugin")
