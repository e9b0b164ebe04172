"""An on-screen window, where OpenCV was built with a GUI and there is a display to show it on.

facefit depends on opencv-python-headless (servers, containers), which has no
windows at all; with the full opencv-python installed instead, ``facefit
stream`` shows the annotated video and stops on q or Esc.
"""

from __future__ import annotations

import os
import sys

import numpy as np

QUIT_KEYS = {ord("q"), ord("Q"), 27}


class Window:
    def __init__(self, title: str) -> None:
        self.title = title

    @classmethod
    def open(cls, title: str = "facefit stream") -> Window | str:
        """A window, or the reason there cannot be one."""
        import cv2

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "there is no display ($DISPLAY is not set)"
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            return "this OpenCV build has no GUI (opencv-python-headless); install opencv-python for a window"
        return cls(title)

    def show(self, bgr: np.ndarray) -> bool:
        """Show a frame; False once the user pressed q or Esc, or closed the window."""
        import cv2

        cv2.imshow(self.title, bgr)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.title)
