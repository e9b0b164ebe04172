"""Writing video: the codec follows the file's suffix; OpenCV encodes, except raw ``.y4m`` (written here).

``.y4m`` (YUV4MPEG2, 4:2:0) is what Chromium's fake camera plays (``--use-file-for-fake-video-capture``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facefit.errors import UsageError

# Codecs the pip builds of OpenCV can always encode (H.264 needs an encoder they do not ship).
CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG", ".y4m": "I420"}


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
        if self.path.suffix.lower() == ".y4m":
            self._writer: cv2.VideoWriter | Y4mWriter = Y4mWriter(self.path, fps, size)
            return
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


class Y4mWriter:
    """Raw YUV4MPEG2 4:2:0 frames, with ``cv2.VideoWriter``'s ``write``/``release``; sizes must be even."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        from fractions import Fraction

        if size[0] % 2 or size[1] % 2:
            raise UsageError(f"{path}: a .y4m video needs an even width and height, not {size[0]}x{size[1]}")
        rate = Fraction(fps).limit_denominator(1001)
        self._file = open(path, "wb")  # closed by release(), like OpenCV's writer
        self._file.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F{rate.numerator}:{rate.denominator} Ip A1:1 "
                         f"C420jpeg\n".encode())

    def write(self, bgr: np.ndarray) -> None:
        import cv2

        self._file.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())  # Y, U, V planes

    def release(self) -> None:
        self._file.close()
