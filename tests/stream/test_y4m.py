"""``.y4m`` output (raw YUV 4:2:0): what Chromium's fake camera plays in the web page's browser tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.errors import UsageError
from facefit.stream.video_out import VideoOut


def test_y4m_frames_are_raw_i420_after_the_header(tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    with VideoOut(tmp_path / "v.y4m", 25, (64, 48)) as out:
        for f in frames:
            out.write(f)
    data = (tmp_path / "v.y4m").read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg"
    size = 64 * 48 * 3 // 2
    assert len(rest) == 3 * (len(b"FRAME\n") + size)
    second = rest[len(b"FRAME\n") + size:]
    assert second.startswith(b"FRAME\n")
    luma = np.frombuffer(second[6:6 + 64 * 48], np.uint8).reshape(48, 64)
    want = cv2.cvtColor(frames[1], cv2.COLOR_BGR2YUV_I420)[:48]
    np.testing.assert_array_equal(luma, want)


def test_y4m_needs_an_even_size(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="even width and height"):
        VideoOut(tmp_path / "odd.y4m", 30000 / 1001, (63, 48))
