"""Drawing tracks on a frame: boxes, names, distances, track ids and the frame rate."""

from __future__ import annotations

import time
import unicodedata
from collections import deque

import numpy as np

from facefit.stream.tracker import Track

# BGR
KNOWN = (60, 200, 60)
UNKNOWN = (40, 40, 230)
PENDING = (0, 200, 230)  # not identified yet
INK = (255, 255, 255)
FONT_SCALE = 0.5


def ascii_label(text: str) -> str:
    """OpenCV's fonts draw ASCII only: keep accented letters' base, mark the rest."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain if plain.strip() else "?"


def track_label(track: Track, show_id: bool = True) -> str:
    ident = track.identity
    if ident.pending:
        text = "..."
    else:
        text = ascii_label(ident.name.replace("_", " ")) if ident.name else "unknown"
        if ident.distance is not None:
            text += f" {ident.distance:.2f}"
    return f"#{track.id} {text}" if show_id else text


def track_colour(track: Track) -> tuple[int, int, int]:
    if track.identity.pending:
        return PENDING
    return KNOWN if track.identity.name else UNKNOWN


def _text(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Text on a filled band so it stays readable on any background; (x, y) is the band's bottom left."""
    import cv2

    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, 1)
    y = max(y, h + base + 2)
    x = min(max(0, x), max(0, img.shape[1] - w - 4))
    cv2.rectangle(img, (x, y - h - base - 2), (x + w + 4, y), colour, cv2.FILLED)
    cv2.putText(img, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, FONT_SCALE, INK, 1, cv2.LINE_AA)


def draw_tracks(img: np.ndarray, tracks: list[Track], fps: float | None = None) -> None:
    """Annotate a BGR frame in place; a coasting track (missed by the last detection) gets a thin box."""
    import cv2

    for track in tracks:
        colour = track_colour(track)
        x0, y0, x1, y1 = (int(round(v)) for v in track.box)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 2 if track.confirmed else 1, cv2.LINE_AA)
        _text(img, track_label(track), x0, y0 - 2, colour)
    if fps is not None:
        _text(img, f"{fps:5.1f} FPS  {len(tracks)} face{'s' if len(tracks) != 1 else ''}", 4, 22, (40, 40, 40))


class FpsMeter:
    """Frames per second over the last ``window`` frames (steadier than 1 / last interval)."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self) -> None:
        self._times.append(time.perf_counter())

    @property
    def fps(self) -> float | None:
        if len(self._times) < 2:
            return None
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else None
