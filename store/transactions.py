"""Write transactions that wait their turn behind another duetto process.

Several duetto processes share one database (the chat app, `duetto docs add`, `duetto ask -c`,
the server). A transaction that reads before it writes (sqlite-utils' own ``BEGIN`` is deferred,
and an insert into a table with a full-text index reads the index's config first) holds a read
snapshot when it asks for the write lock, and SQLite refuses such an upgrade at once ("database
is locked") instead of waiting. ``writing`` takes the write lock first (``BEGIN IMMEDIATE``),
which waits the connection's busy timeout (store/database.py) like any other lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlite_utils


@contextmanager
def writing(db: sqlite_utils.Database) -> Iterator[None]:
    """One write transaction, committed at the end or rolled back on any error (inside another
    one, it is part of that one)."""
    if db.conn.in_transaction:
        yield
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()
