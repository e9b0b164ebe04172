"""Face tracks across frames: detections now and then, IoU association, boxes propagated in between."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facefit.errors import UsageError
from facefit.stream.identity import TrackIdentity
from facefit.stream.propagate import Box, BoxPropagator, centre_inside


@dataclass
class Track:
    """One face followed over time."""

    id: int
    box: Box
    first_frame: int
    first_s: float
    last_frame: int  # the last frame it was seen on (detected, or followed while still confirmed)
    last_s: float
    frames: int = 1  # frames it was seen on
    hits: int = 1  # detections matched to it
    missed: int = 0  # detection rounds in a row that did not find it
    detected_frame: int = -1  # the frame of its latest detection
    identity: TrackIdentity = field(default_factory=TrackIdentity)

    def detected_on(self, frame: int) -> bool:
        return self.detected_frame == frame

    @property
    def confirmed(self) -> bool:
        """Found by the latest detection round (else it is coasting on its last box, about to expire)."""
        return self.missed == 0


@dataclass
class TrackStep:
    active: list[Track]  # tracks alive after this frame, oldest first
    new: list[Track]
    ended: list[Track]


def iou_matrix(a: list[Box], b: list[Box]) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    A, B = np.asarray(a, np.float64)[:, None, :], np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(A[..., 2], B[..., 2]) - np.maximum(A[..., 0], B[..., 0]), 0, None)
    ih = np.clip(np.minimum(A[..., 3], B[..., 3]) - np.maximum(A[..., 1], B[..., 1]), 0, None)
    inter = iw * ih
    area_a = (A[..., 2] - A[..., 0]) * (A[..., 3] - A[..., 1])
    area_b = (B[..., 2] - B[..., 0]) * (B[..., 3] - B[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def greedy_match(iou: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Pairs (row, column) by descending IoU, each used once; enough for the few faces of a frame."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero(iou >= minimum)
    used_r, used_c = set(), set()
    for k in np.argsort(-iou[rows, cols], kind="stable"):
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


class Tracker:
    """Keeps tracks: propagates their boxes each frame, and on detection frames matches, starts and ends them.

    A track that ``max_missed`` detection rounds in a row did not find ends
    (it coasts on its propagated box until then, which bridges a missed
    detection or a face turned away for a moment).
    """

    def __init__(self, propagator: BoxPropagator, *, iou_min: float = 0.3, max_missed: int = 2) -> None:
        if not 0 < iou_min <= 1:
            raise UsageError(f"iou_min must be in (0, 1], got {iou_min}")
        if max_missed < 0:
            raise UsageError(f"max_missed must be >= 0, got {max_missed}")
        self.propagator = propagator
        self.iou_min = iou_min
        self.max_missed = max_missed
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, gray: np.ndarray, frame: int, time_s: float, detections: list[Box] | None) -> TrackStep:
        """Advance to ``frame``; ``detections`` is None on frames where the detector did not run."""
        ended: list[Track] = []
        moved = self.propagator.step(gray, {t.id: t.box for t in self.tracks.values()})
        for track in self.tracks.values():
            box = moved.get(track.id)
            if box is not None:
                track.box = box
                if detections is None and track.confirmed:
                    self._seen(track, frame, time_s)
        new: list[Track] = []
        if detections is not None:
            new = self._associate(gray, frame, time_s, detections, ended)
        for track in list(self.tracks.values()):
            if track not in ended and not centre_inside(track.box, gray.shape):
                ended.append(track)
        for track in ended:
            self.tracks.pop(track.id, None)
            self.propagator.drop(track.id)
        return TrackStep(list(self.tracks.values()), new, ended)

    def _associate(self, gray: np.ndarray, frame: int, time_s: float, detections: list[Box],
                   ended: list[Track]) -> list[Track]:
        tracks = list(self.tracks.values())
        pairs = greedy_match(iou_matrix([t.box for t in tracks], detections), self.iou_min)
        matched_t, matched_d = {r for r, _ in pairs}, {c for _, c in pairs}
        for r, c in pairs:
            track = tracks[r]
            track.box = tuple(float(v) for v in detections[c])
            track.hits += 1
            track.missed = 0
            track.detected_frame = frame
            self._seen(track, frame, time_s)
            self.propagator.start(track.id, gray, track.box)
        for r, track in enumerate(tracks):
            if r not in matched_t:
                track.missed += 1
                if track.missed > self.max_missed:
                    ended.append(track)
        new = []
        for c, box in enumerate(detections):
            if c in matched_d:
                continue
            box = tuple(float(v) for v in box)
            track = Track(self._next_id, box, frame, time_s, frame, time_s, detected_frame=frame)
            self._next_id += 1
            self.tracks[track.id] = track
            self.propagator.start(track.id, gray, box)
            new.append(track)
        return new

    @staticmethod
    def _seen(track: Track, frame: int, time_s: float) -> None:
        if frame != track.last_frame:
            track.frames += 1
        track.last_frame, track.last_s = frame, time_s

    def active(self) -> list[Track]:
        return list(self.tracks.values())
