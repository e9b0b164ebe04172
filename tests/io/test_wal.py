"""Several processes creating one SQLite file at once (a gallery, the face cache) all succeed."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from facefit.gallery.sqlite import SQLiteStore
from facefit.io.cache import EvalCache


@pytest.mark.parametrize("opener", [SQLiteStore, EvalCache], ids=["gallery", "cache"])
def test_many_openers_creating_one_file_at_once_all_succeed(tmp_path: Path, opener: Callable) -> None:
    # SQLite refuses a racing journal-mode switch at once instead of waiting on the busy timeout; CI
    # once lost a gallery writer to it. Threads race the same file locks as processes, and start faster.
    failures: list[str] = []

    def open_and_close(path: Path, start: threading.Barrier) -> None:
        start.wait()
        try:
            opener(path).close()
        except Exception as exc:  # any failure is the finding
            failures.append(f"{type(exc).__name__}: {exc}")

    for trial in range(150):
        path = tmp_path / f"f{trial}.sqlite"
        start = threading.Barrier(6)
        threads = [threading.Thread(target=open_and_close, args=(path, start)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert failures == []
