"""Face detection on video frames: dlib's HOG on the grey frame, scaled to the smallest face wanted.

HOG's window is 80x80 px, so a frame is resized by ``80 / min_face`` and
scanned once, without dlib's upsampling: 640x480 takes about 25 ms on one
core with ``min_face=80``, four times less with ``min_face=160``. Grey input
is about 40% faster than colour and finds the same faces.
"""

from __future__ import annotations

import numpy as np

from facefit.errors import UsageError
from facefit.stream.propagate import Box

HOG_WINDOW_PX = 80


class FrameDetector:
    def __init__(self, min_face: int = HOG_WINDOW_PX, threshold: float = 0.0) -> None:
        from facefit.align.detectors import HogDetector

        if min_face < 20:
            raise UsageError(f"--min-face must be at least 20 px, got {min_face}")
        self.min_face = min_face
        self.scale = HOG_WINDOW_PX / min_face
        # No retry pass: a frame without faces is the common case and must stay cheap.
        self._hog = HogDetector(upsample=0, retry_upsample=None, max_side=1 << 30, threshold=threshold)

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Face boxes in frame pixels."""
        import cv2

        if self.scale == 1.0:
            small = gray
        else:
            h, w = gray.shape[:2]
            size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR)
        back = 1.0 / self.scale
        return [(d.x0 * back, d.y0 * back, d.x1 * back, d.y1 * back) for d in self._hog.detect(small)]
