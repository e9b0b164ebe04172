"""The event log: one JSON line per track when it ends, flushed at once so a killed run keeps its lines."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from facefit.errors import UsageError
from facefit.stream.tracker import Track


@dataclass(frozen=True)
class TrackRecord:
    """What is known about one track when it ends."""

    track: int
    name: str | None  # None = unknown (or never identified: identifications == 0)
    distance: float | None  # the best (lowest) distance for that answer
    first_seen_s: float
    last_seen_s: float
    first_frame: int
    last_frame: int
    frames: int  # frames it was seen on
    identifications: int
    end: str  # "lost" (no longer detected) or "stream_end"

    @classmethod
    def of(cls, track: Track, end: str) -> TrackRecord:
        ident = track.identity
        distance = ident.distance
        return cls(track.id, ident.name, None if distance is None else round(float(distance), 4),
                   round(track.first_s, 3), round(track.last_s, 3), track.first_frame, track.last_frame,
                   track.frames, ident.count, end)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class EventLog:
    """Appends ``TrackRecord`` lines to a new file (or stdout for ``-``); never replaces a file unasked."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = str(path)
        self.lines = 0
        self._own = self.path != "-"
        if not self._own:
            self._fh: TextIO = sys.stdout
            return
        from facefit.io.files import check_writable

        check_writable(path, overwrite)
        try:
            # "x" makes the no-overwrite promise hold even against a file created since the check.
            self._fh = open(path, "w" if overwrite else "x", encoding="utf-8")
        except FileExistsError:
            from facefit.errors import OutputExistsError

            raise OutputExistsError(path) from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None

    def write(self, record: TrackRecord) -> None:
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        self.lines += 1

    def close(self) -> None:
        if self._own:
            self._fh.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | Path) -> list[dict]:
    """The records of an event log, as dicts."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
