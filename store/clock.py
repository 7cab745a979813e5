"""The one clock every stored timestamp is read from: UTC, ISO 8601, to the microsecond.

One format everywhere, so that timestamps of different tables sort and compare as text."""

from __future__ import annotations

import datetime as dt


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
