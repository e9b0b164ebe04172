"""Writing annotated video with OpenCV: the codec follows the file's suffix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facefit.errors import UsageError

# Codecs the pip builds of OpenCV can always encode (H.264 needs an encoder they do not ship).
CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}


def codec_for(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in CODECS:
        raise UsageError(f"{path}: cannot tell the video format from {suffix or 'no suffix'!r}; "
                         f"use one of {', '.join(CODECS)}")
    return CODECS[suffix]


class VideoOut:
    """A video file being written, frame by frame (BGR); ``close()`` finalises it."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        self.size = size  # (width, height)
        self.frames = 0
        fourcc = cv2.VideoWriter_fourcc(*codec_for(self.path))
        self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, fourcc, float(fps), size)
        if not self._writer.isOpened():
            raise UsageError(f"{self.path}: OpenCV cannot write this video (codec {codec_for(self.path)})")

    def write(self, bgr: np.ndarray) -> None:
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            import cv2

            # A stream may change resolution part-way; a video file cannot, so fit the frame to it.
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> VideoOut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
