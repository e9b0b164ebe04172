"""Stream throughput: end-to-end frames per second on a synthetic 640x480 video of real faces.

The video (faces pasted on a background, drifting slowly) and a gallery of
the same persons (enrolled from their other photos) are built in a temporary
folder and deleted afterwards. Each run times the whole loop: decoding,
detection on every n-th frame, tracking in between, identification of new
tracks, drawing, and optionally encoding the annotated video. It also scores
the boxes against the true face positions and the names against the truth.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facefit.bench.synthetic_video import Actor, SyntheticVideo, build_video
from facefit.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ENROL_PHOTOS = 4


@dataclass
class Person:
    name: str
    video_photo: Path  # the photo pasted into the video
    enrol_photos: list[Path]  # other photos of the same person, for the gallery


@dataclass
class StreamBenchRow:
    faces: int
    detect_every: int
    tracker: str
    write: bool
    frames: int
    seconds: float
    detections: int  # detector runs
    identifications: int
    box_iou: float  # mean IoU of each true face with its best track box (0 where no box)
    face_recall: float  # fraction of true faces covered by a track box at IoU >= 0.5
    named: float  # fraction of tracks whose final name is the person's

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": self.fps}


def faces_folder(given: Path | None, purpose: str) -> Path:
    """``--faces-from``, else LFW's images in the shared data; a UsageError saying what is needed otherwise.

    ``purpose`` completes "the ... benchmark <purpose>", e.g. "builds its video from real face photos".
    """
    folder = given or default_faces_dir()
    if folder is None:
        raise UsageError(f"the benchmark {purpose}: pass --faces-from DIR (one sub-folder of photos per person, "
                         f"e.g. LFW's images/), or set $FACEFIT_DATA to a data folder with lfw/images")
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    return folder


def default_faces_dir(data: Path | None = None) -> Path | None:
    """LFW's images in the shared data folder (--data, $FACEFIT_DATA or ../shared/data), if there."""
    from facefit.io.assets import find_data_dir

    root = find_data_dir(data)
    lfw = root / "lfw" / "images" if root is not None else None
    return lfw if lfw is not None and lfw.is_dir() else None


def pick_persons(faces_dir: Path, n: int) -> list[Person]:
    """The ``n`` persons with the most photos (ties by name) whose first photo shows a detectable face."""
    from facefit.align.aligner import detect_and_align

    folders = []
    for entry in sorted(os.scandir(faces_dir), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            photos = sorted(p for p in Path(entry.path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if len(photos) >= 2:
                folders.append((entry.name, photos))
    folders.sort(key=lambda f: -len(f[1]))  # stable: equal counts stay in name order
    persons = []
    for name, photos in folders:
        if detect_and_align(photos[0], faces="largest"):
            persons.append(Person(name, photos[0], photos[1:1 + ENROL_PHOTOS]))
        if len(persons) == n:
            return persons
    raise UsageError(f"{faces_dir}: found {len(persons)} usable person folder(s) (at least 2 photos, a face in the "
                     f"first), need {n}; --faces-from takes a folder with one sub-folder of photos per person")


def score_boxes(video: SyntheticVideo, seen: list[tuple[int, list[tuple[float, float, float, float]]]]
                ) -> tuple[float, float]:
    """(mean best IoU, recall at IoU 0.5) of the true faces against the tracked boxes."""
    from facefit.stream.tracker import iou_matrix

    best: list[float] = []
    for index, boxes in seen:
        truth = [b for _, b in video.truth[index]]
        if truth:
            best += list(iou_matrix(truth, boxes).max(axis=1)) if boxes else [0.0] * len(truth)
    arr = np.asarray(best) if best else np.zeros(1)
    return float(arr.mean()), float((arr >= 0.5).mean())


def run_once(video: SyntheticVideo, model, gallery, *, detect_every: int, tracker: str,
             write_to: Path | None) -> StreamBenchRow:
    from facefit.stream.runner import StreamConfig, StreamRunner
    from facefit.stream.source import VideoSource
    from facefit.stream.video_out import VideoOut

    runner = StreamRunner(StreamConfig(detect_every=detect_every, tracker=tracker), model, gallery)
    seen: list[tuple[int, list]] = []
    with VideoSource(str(video.path)) as source:
        out = VideoOut(write_to, source.fps, (source.width, source.height)) if write_to else None
        try:
            stats = runner.run(source, video=out, draw=True,
                               on_frame=lambda f, tracks: seen.append((f.index, [t.box for t in tracks])))
        finally:
            if out is not None:
                out.close()
    iou, recall = score_boxes(video, seen)
    names = {name for frame in video.truth for name, _ in frame}
    named = float(np.mean([r.name in names for r in stats.records])) if stats.records else 0.0
    return StreamBenchRow(len(names), detect_every, tracker, write_to is not None, stats.frames, stats.seconds,
                          stats.detection_frames, stats.identifications, iou, recall, named)


def bench_stream(faces_dir: Path, workdir: Path, *, faces: list[int], frames: int, detect_every: list[int],
                 trackers: list[str], model_name: str = "dlib-resnet", on_row=None) -> list[StreamBenchRow]:
    """Build the videos and gallery in ``workdir`` and time every combination (without, then with writing)."""
    from facefit.gallery.gallery import Gallery
    from facefit.models import create_model

    persons = pick_persons(faces_dir, max(faces))
    model = create_model(model_name)
    rows = []
    with Gallery.open(workdir / "gallery.sqlite") as gallery:
        for p in persons:
            report = gallery.add(p.name, p.enrol_photos, model)
            if not report.added and not report.duplicates:
                raise UsageError(f"could not enrol {p.name} from {faces_dir / p.name}: no usable photo")
        for n in faces:
            actors = [Actor(p.name, p.video_photo) for p in persons[:n]]
            video = build_video(workdir / f"faces{n}.avi", actors, frames=frames)
            for every in detect_every:
                for tracker in trackers:
                    for write in (False, True):
                        row = run_once(video, model, gallery, detect_every=every, tracker=tracker,
                                       write_to=workdir / "annotated.avi" if write else None)
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
    return rows
