"""A short synthetic video of real LFW faces (two enrolled persons and a stranger) and their gallery.

Everything made from the photos lives under pytest's temporary folders only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

ENROLLED = ("George_W_Bush", "Colin_Powell")
STRANGER = "Serena_Williams"
FRAMES = 75
STRANGER_ENTERS, STRANGER_LEAVES = 15, 60


@dataclass
class Scene:
    video: Path
    gallery: Path
    truth: list  # per frame: [(name, box), ...]


def photos(lfw: Path, name: str) -> list[Path]:
    return sorted((lfw / name).glob("*.jpg"))


@pytest.fixture(scope="session")
def scene(lfw: Path, model, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    from facefit.bench.synthetic_video import Actor, build_video
    from facefit.gallery.gallery import Gallery

    root = tmp_path_factory.mktemp("stream-scene")
    actors = [Actor(n, photos(lfw, n)[0]) for n in ENROLLED]
    actors.append(Actor("stranger", photos(lfw, STRANGER)[0], enter=STRANGER_ENTERS, leave=STRANGER_LEAVES))
    video = build_video(root / "scene.avi", actors, frames=FRAMES)
    with Gallery.open(root / "gallery.sqlite") as g:
        for name in ENROLLED:
            report = g.add(name, photos(lfw, name)[1:5], model)  # not the photo in the video
            assert len(report.added) == 4, report.failures
    return Scene(video.path, root / "gallery.sqlite", video.truth)


def read_video(path: Path) -> tuple[int, tuple[int, int]]:
    """(frames, (width, height)) of a video, counted by decoding it."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        size = (frame.shape[1], frame.shape[0])
    cap.release()
    return n, size
