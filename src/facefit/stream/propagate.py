"""Moving face boxes from one frame to the next between detections.

Three ways, all on the grey frame: ``flow`` (Lucas-Kanade optical flow of
corner points inside each box, checked forwards and backwards: about 1 ms
a face), ``correlation`` (dlib's correlation tracker: more
robust to blur, about 4 ms a face) and ``none`` (boxes stay put until the next
detection: cheapest, fine when the detector runs on most frames).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from facefit.errors import UsageError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
PROPAGATORS = ("flow", "correlation", "none")


class BoxPropagator(Protocol):
    name: str

    def start(self, key: int, gray: np.ndarray, box: Box) -> None:
        """Begin (or restart) following ``box`` in ``gray``, the current frame."""
        ...

    def drop(self, key: int) -> None:
        ...

    def step(self, gray: np.ndarray, boxes: dict[int, Box]) -> dict[int, Box | None]:
        """The boxes moved into ``gray``; None where the face could not be followed."""
        ...


def make_propagator(name: str) -> BoxPropagator:
    if name == "flow":
        return FlowPropagator()
    if name == "correlation":
        return CorrelationPropagator()
    if name == "none":
        return StaticPropagator()
    raise UsageError(f"unknown tracker {name!r}; choose one of: {', '.join(PROPAGATORS)}")


def inner_box(box: Box, shrink: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The central part of a box, clipped to the frame, as integer pixel bounds."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * shrink, (y1 - y0) * shrink
    h, w = shape[:2]
    return (max(0, int(x0 + dx)), max(0, int(y0 + dy)), min(w, int(x1 - dx)), min(h, int(y1 - dy)))


def centre_inside(box: Box, shape: tuple[int, ...]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return 0 <= cx < shape[1] and 0 <= cy < shape[0]


class StaticPropagator:
    name = "none"

    def start(self, key: int, gray: np.ndarray, box: Box) -> None:
        pass  # nothing to remember: boxes do not move

    def drop(self, key: int) -> None:
        pass

    def step(self, gray: np.ndarray, boxes: dict[int, Box]) -> dict[int, Box | None]:
        return dict(boxes)


class FlowPropagator:
    """Median optical flow of up to ``max_points`` corners in the face's centre (the edges catch background)."""

    name = "flow"

    def __init__(self, max_points: int = 30, min_points: int = 5, fb_max_px: float = 1.0,
                 shrink: float = 0.2, search: float = 0.5) -> None:
        import cv2

        self._cv2 = cv2
        self.max_points = max_points
        self.min_points = min_points
        self.fb_max_px = fb_max_px
        self.shrink = shrink
        self.search = search  # the flow window extends this many face sizes around the box
        self._points: dict[int, np.ndarray] = {}
        self._prev: np.ndarray | None = None
        self._lk = {"winSize": (15, 15), "maxLevel": 2,
                    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)}

    def _seed(self, gray: np.ndarray, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = inner_box(box, self.shrink, gray.shape)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return np.empty((0, 2), np.float32)
        found = self._cv2.goodFeaturesToTrack(gray[y0:y1, x0:x1], self.max_points, 0.01, 3)
        if found is None:
            return np.empty((0, 2), np.float32)
        return (found.reshape(-1, 2) + np.array([x0, y0], np.float32)).astype(np.float32)

    def start(self, key: int, gray: np.ndarray, box: Box) -> None:
        self._points[key] = self._seed(gray, box)
        self._prev = gray

    def drop(self, key: int) -> None:
        self._points.pop(key, None)

    def step(self, gray: np.ndarray, boxes: dict[int, Box]) -> dict[int, Box | None]:
        prev, self._prev = self._prev, gray
        moved: dict[int, Box | None] = {key: None for key in boxes}
        if prev is None or prev.shape != gray.shape:
            return moved
        for key, box in boxes.items():
            points = self._points.get(key)
            if points is None or len(points) < self.min_points:
                continue
            found = self._follow(prev, gray, box, points)
            if found is None or not centre_inside(found[0], gray.shape):
                self._points[key] = np.empty((0, 2), np.float32)
                continue
            moved[key], kept = found
            # Refill once half the points are gone, so the next step still has enough.
            self._points[key] = kept if len(kept) >= self.max_points // 2 else self._seed(gray, moved[key])
        return moved

    def _follow(self, prev: np.ndarray, gray: np.ndarray, box: Box,
                points: np.ndarray) -> tuple[Box, np.ndarray] | None:
        """Flow inside a window around one face: far cheaper than whole-frame pyramids."""
        x0, y0, x1, y1 = box
        m = self.search * max(x1 - x0, y1 - y0) + 8
        h, w = gray.shape[:2]
        rx0, ry0 = max(0, int(x0 - m)), max(0, int(y0 - m))
        rx1, ry1 = min(w, int(x1 + m) + 1), min(h, int(y1 + m) + 1)
        if rx1 - rx0 < 16 or ry1 - ry0 < 16:
            return None
        origin = np.array([rx0, ry0], np.float32)
        a_img, b_img = prev[ry0:ry1, rx0:rx1], gray[ry0:ry1, rx0:rx1]
        p0 = (points - origin).reshape(-1, 1, 2)
        p1, st1, _ = self._cv2.calcOpticalFlowPyrLK(a_img, b_img, p0, None, **self._lk)
        back, st2, _ = self._cv2.calcOpticalFlowPyrLK(b_img, a_img, p1, None, **self._lk)
        # Forward-backward check: a point that does not come back to where it started was lost.
        fb = np.linalg.norm((p0 - back).reshape(-1, 2), axis=1)
        good = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.fb_max_px)
        if good.sum() < self.min_points:
            return None
        a, b = p0.reshape(-1, 2)[good] + origin, p1.reshape(-1, 2)[good] + origin
        return self._move(box, a, b), b

    @staticmethod
    def _move(box: Box, a: np.ndarray, b: np.ndarray) -> Box:
        shift = np.median(b - a, axis=0)
        # Scale from how far the points sit from their centre, before and after; clamped, since a few
        # bad points can fake a big zoom.
        ra = np.linalg.norm(a - a.mean(axis=0), axis=1)
        rb = np.linalg.norm(b - b.mean(axis=0), axis=1)
        ok = ra > 2.0
        scale = float(np.clip(np.median(rb[ok] / ra[ok]), 0.9, 1.1)) if ok.sum() >= 3 else 1.0
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2 + shift[0], (y0 + y1) / 2 + shift[1]
        hw, hh = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
        return (float(cx - hw), float(cy - hh), float(cx + hw), float(cy + hh))


class CorrelationPropagator:
    """dlib's correlation tracker (scale-adaptive DSST), one per face."""

    name = "correlation"
    MIN_PSR = 5.0  # peak-to-sidelobe ratio below which the tracker has lost the face

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._trackers: dict[int, object] = {}

    def start(self, key: int, gray: np.ndarray, box: Box) -> None:
        tracker = self._dlib.correlation_tracker()
        tracker.start_track(gray, self._dlib.drectangle(*box))
        self._trackers[key] = tracker

    def drop(self, key: int) -> None:
        self._trackers.pop(key, None)

    def step(self, gray: np.ndarray, boxes: dict[int, Box]) -> dict[int, Box | None]:
        moved: dict[int, Box | None] = {}
        for key in boxes:
            tracker = self._trackers.get(key)
            if tracker is None:
                moved[key] = None
                continue
            psr = tracker.update(gray)
            r = tracker.get_position()
            box = (float(r.left()), float(r.top()), float(r.right()), float(r.bottom()))
            moved[key] = box if psr >= self.MIN_PSR and centre_inside(box, gray.shape) else None
        return moved
