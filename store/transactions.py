"""Write transactions that wait their turn behind another duetto process.

Several duetto processes share one database (the chat app, `duetto docs add`, `duetto ask -c`,
the server). A transaction that reads before it writes (sqlite-utils' own ``BEGIN`` is deferred,
and an insert into a table with a full-text index reads the index's config first) holds a read
snapshot when it asks for the write lock, and SQLite refuses such an upgrade at once ("database
is locked") instead of waiting. ``writing`` takes the write lock first (``BEGIN IMMEDIATE``),
which waits the connection's busy timeout (store/database.py) like any other lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils

from duetto.store.errors import storage_failure


@contextmanager
def writing(db: sqlite_utils.Database) -> Iterator[None]:
    """One write transaction, committed at the end or rolled back on any error (inside another
    one, it is part of that one). A disk that is full, read-only or failing becomes one
    StorageFailed naming the database file, with the transaction rolled back."""
    if db.conn.in_transaction:
        yield
        return
    try:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.conn.rollback()
            raise
        db.conn.commit()
    except sqlite3.Error as error:
        failure = storage_failure(error, database_file(db))
        if failure is None:
            raise
        with contextlib.suppress(sqlite3.Error):
            db.conn.rollback()
        raise failure from error


def database_file(db: sqlite_utils.Database) -> str:
    """The file behind ``db``'s main schema, for error messages."""
    try:
        return next((row[2] for row in db.conn.execute("PRAGMA database_list") if row[1] == "main"), "the database")
    except sqlite3.Error:
        return "the database"
