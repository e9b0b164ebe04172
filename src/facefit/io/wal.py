"""Putting an SQLite file in WAL mode safely when several processes open it at once."""

from __future__ import annotations

import random
import sqlite3
import time


def use_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """Put the file behind ``db`` in WAL mode (a property of the file, so only its first opener changes it).

    SQLite answers a journal-mode switch that races another connection with "database is locked"
    at once, without waiting on the busy timeout, so of two processes creating the same file one
    would fail; wait and retry here instead, up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))  # jitter so racing openers do not retry in step
