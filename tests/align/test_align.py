"""Detection and alignment: exactly dlib's chip, multi-face policies, big and odd images."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.align import AlignConfig, Detection, FaceAligner, FacePolicy, detect_and_align, select_faces
from facefit.align.batch import align_files
from facefit.align.detectors import ChainDetector, HogDetector, PaddedDetector
from facefit.errors import UsageError
from facefit.io import load_image


def test_chip_is_exactly_dlibs(yale_files, dlib_ref) -> None:
    import dlib

    for path in yale_files[:40:4]:
        image = load_image(path)
        faces = detect_and_align(image)
        rects = dlib_ref.detector(image, 1)
        assert len(faces) == len(rects) == 1
        shape = dlib_ref.predictor(image, rects[0])
        np.testing.assert_array_equal(faces[0].chip, dlib.get_face_chip(image, shape, size=150, padding=0.25))
        expected = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        np.testing.assert_array_equal(faces[0].landmarks, expected)
        assert faces[0].chip.shape == (150, 150, 3) and faces[0].detector == "hog"


@pytest.fixture(scope="module")
def two_faces(yale_files) -> np.ndarray:
    """A real photo pair on one canvas: a big face on the left, a smaller one right of centre."""
    import cv2

    big = load_image(yale_files[0])
    small = cv2.resize(load_image(yale_files[15]), None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full((243, 320 + 240 + 160, 3), 128, np.uint8)
    canvas[:, :320] = big
    canvas[: small.shape[0], 320 + 40 : 320 + 40 + small.shape[1]] = small
    return canvas


def test_face_policies(two_faces) -> None:
    every = detect_and_align(two_faces, faces="all")
    assert len(every) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in every]
    largest = detect_and_align(two_faces, faces="largest")
    assert len(largest) == 1 and largest[0].box == every[int(np.argmax(areas))].box
    center = detect_and_align(two_faces, faces="center")
    cx = two_faces.shape[1] / 2
    dist = [abs((f.box[0] + f.box[2]) / 2 - cx) for f in every]
    assert len(center) == 1 and center[0].box == every[int(np.argmin(dist))].box
    assert center[0].box != largest[0].box  # the fixture is built so the two policies disagree


def test_select_faces_unit() -> None:
    a = Detection(0, 0, 10, 10, 1.0, "t")
    b = Detection(40, 40, 60, 60, 0.5, "t")
    assert select_faces([a, b], "largest", (100, 100)) == [b]
    assert select_faces([a, b], "center", (100, 100)) == [b]
    assert select_faces([a, b], "all", (100, 100)) == [a, b]
    assert select_faces([], "largest", (100, 100)) == []
    with pytest.raises(ValueError):
        select_faces([a], "biggest", (100, 100))


def test_no_face_gives_an_empty_list() -> None:
    rng = np.random.default_rng(0)
    assert detect_and_align(np.full((200, 200, 3), 90, np.uint8)) == []
    assert detect_and_align(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) == []


def test_grey_and_rgba_arrays(yale_files) -> None:
    rgb = load_image(yale_files[2])
    grey = rgb[..., 0].copy()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    ref = detect_and_align(rgb)[0]
    for arr in (grey, rgba):
        face = detect_and_align(arr)[0]
        np.testing.assert_array_equal(face.chip, ref.chip)
    with pytest.raises(TypeError, match="uint8"):
        detect_and_align(rgb.astype(np.float32))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_huge_image_is_detected_on_a_shrunk_copy(yale_files, model) -> None:
    """A 4800-px photo: detection runs at 2000 px, boxes come back in full-size pixels, same face."""
    import cv2

    small = load_image(yale_files[4])
    ref = detect_and_align(small)[0]
    big = cv2.resize(small, None, fx=15, fy=15, interpolation=cv2.INTER_CUBIC)
    faces = detect_and_align(big)
    assert len(faces) == 1
    assert _iou(np.asarray(faces[0].box) / 15, ref.box) > 0.6
    a, b = model.embed(np.stack([ref.chip, faces[0].chip]))
    assert np.linalg.norm(a - b) < 0.25  # same person, same alignment up to resampling


def test_padded_detector_finds_tightly_cropped_faces(yale_files) -> None:
    """A face cropped to its own box (like the Korean set) needs canvas around it for HOG."""
    image = load_image(yale_files[0])
    x0, y0, x1, y1 = (int(v) for v in detect_and_align(image)[0].box)
    dx, dy = (x1 - x0) // 5, (y1 - y0) // 5
    tight = np.ascontiguousarray(image[y0 + dy : y1 - dy, x0 + dx : x1 - dx])
    hog = HogDetector(retry_upsample=None)
    padded = PaddedDetector(hog)
    assert hog.detect(tight) == []
    found = padded.detect(tight)
    assert len(found) == 1 and found[0].source == "hog-pad"
    assert found[0].x0 < 0 or found[0].y0 < 0  # the box reaches past the crop
    chain = ChainDetector([hog, padded])
    assert chain.detect(tight) == found and chain.name == "hog+hog-pad"
    aligner = FaceAligner(AlignConfig(), detector=chain)
    assert aligner(tight)[0].chip.shape == (150, 150, 3)


def test_mmod_detector(yale_files) -> None:
    faces = detect_and_align(load_image(yale_files[0]), detector="mmod")
    assert len(faces) == 1 and faces[0].detector == "mmod"


def test_unknown_detector() -> None:
    with pytest.raises(UsageError, match="unknown detector"):
        detect_and_align(np.zeros((10, 10, 3), np.uint8), detector="yolo")


def test_parallel_alignment_keeps_order_and_failures(yale_files, tmp_path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    files = yale_files[:10] + [bad, blank] + yale_files[10:14]
    serial = list(align_files(files, workers=1))
    parallel = list(align_files(files, workers=2))
    assert [r.path for r in parallel] == files
    assert [r.error is None for r in parallel] == [r.error is None for r in serial]
    assert "cannot decode" in parallel[10].error.reason or "not an image" in parallel[10].error.reason
    assert parallel[11].error.reason == "no face found"
    for s, p in zip(serial, parallel):
        for fs, fp in zip(s.faces, p.faces):
            np.testing.assert_array_equal(fs.chip, fp.chip)


def test_aligned_input_checks_size(johns_dir, yale_files) -> None:
    files = sorted(johns_dir.glob("John_Simm/*.jpg"))[:2] + [yale_files[0]]
    results = list(align_files(files, aligned_input=True))
    assert [r.error is None for r in results] == [True, True, False]
    assert "takes 150x150 chips" in results[2].error.reason and "another model" in results[2].error.reason
    assert results[0].faces[0].chip.shape == (150, 150, 3)


def test_policy_enum_values() -> None:
    assert [p.value for p in FacePolicy] == ["all", "largest", "center"]
