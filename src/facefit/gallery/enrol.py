"""From photos to storable faces: detect, choose the face, align, embed, keep a loose crop.

The loose crop (twice the face box, at most ``CROP_MAX_SIDE`` pixels) with its
landmarks is what lets ``reembed`` cut a new chip for another model after the
source photos are gone; it is deleted with the person.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facefit.align.aligner import Face, points_family
from facefit.engine import FaceEngine
from facefit.errors import FacefitError, ImageError, UsageError
from facefit.gallery.records import NewFace
from facefit.io.images import ImageBytes

CROP_MAX_SIDE = 320
CROP_CONTEXT = 2.0  # crop side / face box side
CROP_JPEG_QUALITY = 95


@dataclass
class Prepared:
    faces: list[NewFace] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def parse_face_choice(text: str | None) -> str | int | None:
    """``--face``: None (the photo must show exactly one face), ``largest``, ``center`` or a 0-based index."""
    if text is None:
        return None
    value = text.strip().lower()
    if value in ("largest", "center"):
        return value
    if value.isascii() and value.isdigit() and len(value) <= 6:  # isdigit alone takes "²", which int() refuses
        return int(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise UsageError(f"--face {shown!r}: expected largest, center or a face number (0 = leftmost)")


def choose_face(faces: list[Face], choice: str | int | None, image_shape: tuple[int, ...]) -> Face:
    """The face to enrol; raises with a clear reason when there is none or the choice is ambiguous."""
    faces = sorted(faces, key=lambda f: f.box[0])  # numbered left to right, as printed
    if not faces:
        raise FacefitError("no face found")
    if choice is None:
        if len(faces) > 1:
            raise FacefitError(f"{len(faces)} faces found; choose one with --face largest, --face center or "
                               f"--face N (0 = leftmost)")
        return faces[0]
    if choice == "largest":
        return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    if choice == "center":
        cy, cx = image_shape[0] / 2, image_shape[1] / 2
        return min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2)
    if not 0 <= int(choice) < len(faces):
        raise FacefitError(f"--face {choice}: only {len(faces)} face(s) found (numbered from 0, left to right)")
    return faces[int(choice)]


def loose_crop(image: np.ndarray, face: Face) -> tuple[bytes, np.ndarray, tuple[float, ...]]:
    """JPEG of the face with context, and its landmarks and box in the crop's coordinates."""
    import cv2

    x0, y0, x1, y1 = face.box
    side = CROP_CONTEXT * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = image.shape[:2]
    left, top = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    right, bottom = min(w, int(np.ceil(cx + side / 2))), min(h, int(np.ceil(cy + side / 2)))
    crop = image[top:bottom, left:right]
    scale = min(1.0, CROP_MAX_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    if not ok:
        raise FacefitError("could not encode the face crop")
    lm = (np.asarray(face.landmarks, np.float32) - [left, top]) * scale
    box = tuple(float(v) for v in ((x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale))
    return buf.tobytes(), lm.astype(np.float32), box


def decode_crop(jpeg: bytes) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise FacefitError("a stored face crop is damaged")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def sharpness(chip: np.ndarray) -> float:
    import cv2

    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def load_working(source: str | os.PathLike | ImageBytes, *, max_side: int | None = None,
                 limit_pixels: int | None = None) -> tuple[np.ndarray, float]:
    """The photo decoded at most ``max_side`` pixels long, and the factor from its pixels to the photo's own.

    Detection and alignment then work on a bounded copy; ``scale_face`` maps what they find back.
    """
    from facefit.io.images import load_image

    image = load_image(source, limit_pixels=limit_pixels, max_side=max_side)
    if max_side is None or max(image.shape[:2]) < max_side:
        return image, 1.0
    from PIL import Image

    # The header's size is the photo's own (before any EXIF turn, which keeps the longer side's length).
    data = source.data if isinstance(source, ImageBytes) else None
    with Image.open(io.BytesIO(data) if data is not None else source) as im:
        full = max(im.size)
    return image, full / max(image.shape[:2])


def scale_face(face: Face, factor: float) -> Face:
    """``face`` with its box and landmarks in pixels ``factor`` times larger (its chip is unchanged)."""
    if factor == 1.0:
        return face
    box = tuple(float(v) * factor for v in face.box)
    return replace(face, box=box, landmarks=np.asarray(face.landmarks, np.float32) * np.float32(factor))


def prepare_faces(
    paths: Sequence[str | os.PathLike | ImageBytes],
    engine: FaceEngine,
    *,
    choice: str | int | None = None,
    keep_crops: bool = True,
    on_image: Callable[[], None] | None = None,
    max_side: int | None = None,
    limit_pixels: int | None = None,
) -> Prepared:
    """Detect and embed one face per photo; every photo either yields a face or a failure reason.

    Photos are files or in-memory ``ImageBytes`` (uploads), which are reported by their name. With
    ``max_side``, larger photos are worked on at a reduced size (``load_working``); the stored box and
    face size are still in the photo's own pixels, so the duplicate check matches a full-size enrolment.
    """
    import hashlib

    from facefit.io.assets import sha256_file
    from facefit.io.files import shown

    out = Prepared()
    chosen, pending = [], []
    points = points_family(engine.config.recipe)  # the kind of landmarks every face found here carries
    for p in paths:
        path = p.name if isinstance(p, ImageBytes) else Path(p)
        source = shown(path)  # what is stored and reported: a name that is not UTF-8 cannot go into the database
        try:
            image, factor = load_working(p, max_side=max_side, limit_pixels=limit_pixels)
            sha = hashlib.sha256(p.data).hexdigest() if isinstance(p, ImageBytes) else sha256_file(path)
            face = choose_face(engine.find(image, "all"), choice, image.shape)
            jpeg, lm, cbox = loose_crop(image, face) if keep_crops else (None, face.landmarks * factor, None)
            del image  # a large photo's pixels are not kept while the rest are read
        except ImageError as exc:
            out.failures.append((source, exc.reason))
        except (FacefitError, OSError) as exc:
            out.failures.append((source, shown(str(exc))))
        else:
            chosen.append(face)
            box = scale_face(face, factor).box
            pending.append(NewFace(sha, source, box, np.empty(0, np.float32), lm, jpeg, cbox, face.score,
                                   box[2] - box[0], sharpness(face.chip), face.detector, points=points))
        if on_image is not None:
            on_image()
    if chosen:
        emb = engine.embed(chosen)
        for face, e in zip(pending, emb):
            face.embedding = e
        out.faces = pending
    return out
