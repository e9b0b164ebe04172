"""YuNet: boxes and five points on real faces, the template crop from them, box-only faces, odd images, workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from facefit.align import AlignConfig, Detection, FaceAligner, FacePolicy, detect_and_align, make_detector
from facefit.align.aligner import YUNET_TO_SP5_BOX, sp5_box
from facefit.align.batch import align_files
from facefit.align.cached import det_key
from facefit.align.detectors import DETECTORS, ChainDetector, YuNetDetector, iou, layout_points
from facefit.align.recipe import ARCFACE_TEMPLATE_112, ARCFACE_YUNET_112, DLIB_CHIP_150
from facefit.align.template import five_points, template_for
from facefit.io import load_image


@pytest.fixture(scope="module")
def photos(lfw: Path) -> list[Path]:
    """LFW's first photo of the first persons (250x250, one face in the middle, sometimes others behind)."""
    return sorted(lfw.glob("A*/*_0001.jpg"))[:12]


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector()


def _central(dets: list[Detection], shape: tuple[int, ...]) -> Detection:
    return min(dets, key=lambda d: ((d.x0 + d.x1) / 2 - shape[1] / 2) ** 2 + ((d.y0 + d.y1) / 2 - shape[0] / 2) ** 2)


def test_finds_lfw_faces_where_hog_does_with_points_in_order(photos, yunet, dlib_ref) -> None:
    for path in photos:
        image = load_image(path)
        found = yunet.detect(image)
        assert found, path.name
        assert [d.x0 for d in found] == sorted(d.x0 for d in found)  # left to right, like dlib's
        d = _central(found, image.shape)
        assert d.source == "yunet" and 0.7 <= d.score <= 1.0
        hog = dlib_ref.detector(image, 1)
        assert hog, path.name
        assert max(iou(d.box, (r.left(), r.top(), r.right() + 1, r.bottom() + 1)) for r in hog) > 0.5
        pts = d.landmarks
        assert pts.shape == (5, 2) and pts.dtype == np.float32
        assert (pts[:, 0] > d.x0).all() and (pts[:, 0] < d.x1).all()
        assert (pts[:, 1] > d.y0).all() and (pts[:, 1] < d.y1).all()
        left_eye, right_eye, nose, left_mouth, right_mouth = pts
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]  # the ArcFace order, image-left first
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def test_template_crop_puts_the_eyes_on_the_template(photos) -> None:
    """dlib's 68-point eye centres, found again in YuNet-point chips, sit on insightface's template eyes."""
    import dlib

    from facefit.io.assets import SHAPE_PREDICTOR_68, verified

    predictor = dlib.shape_predictor(str(verified(SHAPE_PREDICTOR_68)[0]))
    detector = dlib.get_frontal_face_detector()
    eye_errors = []
    for path in photos:
        faces = detect_and_align(path, faces="center", recipe=ARCFACE_YUNET_112)
        assert len(faces) == 1 and faces[0].detector == "yunet" and faces[0].chip.shape == (112, 112, 3)
        chip = faces[0].chip
        again = YuNetDetector().detect(chip)  # YuNet finds its own points back on the template
        assert again and np.abs(_central(again, chip.shape).landmarks - template_for(112)).max() < 8
        found = detector(chip, 1)
        if not found:
            continue
        pts = five_points(np.array([(p.x, p.y) for p in predictor(chip, found[0]).parts()], float))
        eye_errors.append(np.linalg.norm(pts[:2] - template_for(112)[:2], axis=1).mean())
    assert len(eye_errors) >= 10
    # Pixels of 112: YuNet's eye points sit about 2 px above the 68-point eye centres, plus landmark noise.
    assert np.median(eye_errors) < 5 and max(eye_errors) < 9


def test_template_chip_is_opencvs_align_crop(photos) -> None:
    """The YuNet recipe's chip is what OpenCV's FaceRecognizerSF.alignCrop cuts from the same detection."""
    import cv2

    from facefit.io.assets import SFACE_ONNX, verified

    recognizer = cv2.FaceRecognizerSF.create(str(verified(SFACE_ONNX)[0]), "")
    aligner = FaceAligner(AlignConfig(recipe=ARCFACE_YUNET_112))
    for path in photos[:6]:
        image = load_image(path)
        d = _central(aligner.detector.detect(image), image.shape)
        row = np.array([[d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0, *d.landmarks.ravel(), d.score]], np.float32)
        ref = recognizer.alignCrop(np.ascontiguousarray(image[..., ::-1]), row)[..., ::-1]
        assert np.abs(ref.astype(int) - aligner.cut(image, d.box, d.landmarks)).max() <= 1  # rounding only


def test_face_landmarks_are_the_detections_points(photos) -> None:
    image = load_image(photos[0])
    aligner = FaceAligner(AlignConfig(recipe=ARCFACE_YUNET_112))
    assert aligner.config.detector == "yunet" and isinstance(aligner.detector, YuNetDetector)
    det = _central(aligner.detector.detect(image), image.shape)
    face = aligner.align_detection(image, det)
    np.testing.assert_array_equal(face.landmarks, det.landmarks)
    np.testing.assert_array_equal(aligner.cut(image, face.box, face.landmarks), face.chip)  # the cache's path
    np.testing.assert_array_equal(aligner.cut(image, face.box, face.landmarks, ARCFACE_YUNET_112), face.chip)


def test_align_box_finds_yunet_points_around_a_box(photos, dlib_ref) -> None:
    """A box without points (a tracker's, HOG's): YuNet runs around it and its face there gives the points."""
    image = load_image(photos[1])
    aligner = FaceAligner(AlignConfig(recipe=ARCFACE_YUNET_112))
    own = _central(aligner.detector.detect(image), image.shape)
    r = dlib_ref.detector(image, 1)[0]
    hog_box = (float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1))
    pts, found = aligner.yunet_points(image, hog_box)
    assert found
    eye_span = np.linalg.norm(own.landmarks[1] - own.landmarks[0])
    assert np.linalg.norm(pts - own.landmarks, axis=1).max() < 0.2 * eye_span  # YuNet's points, up to its noise
    face = aligner.align_box(image, hog_box, 0.5, "tracker")
    assert face.box == hog_box and face.detector == "tracker" and face.chip.shape == (112, 112, 3)
    np.testing.assert_array_equal(face.landmarks, pts)


def test_align_box_falls_back_to_the_fixed_layout() -> None:
    """Nothing face-like in the box: the points go where YuNet typically puts them."""
    aligner = FaceAligner(AlignConfig(recipe=ARCFACE_YUNET_112))
    rng = np.random.default_rng(0)
    box = (40.0, 30.0, 140.0, 160.0)
    for image in (np.full((200, 200, 3), 90, np.uint8), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)):
        pts, found = aligner.yunet_points(image, box)
        assert not found
        np.testing.assert_allclose(pts, layout_points(box))
        face = aligner.align_box(image, box)
        np.testing.assert_allclose(face.landmarks, layout_points(box))
        assert face.chip.shape == (112, 112, 3)
    left_eye, right_eye, nose, left_mouth, right_mouth = layout_points(box)
    assert box[0] < left_eye[0] < nose[0] < right_eye[0] < box[2] and left_mouth[0] < right_mouth[0]
    assert box[1] < left_eye[1] < nose[1] < left_mouth[1] < box[3]
    # Boxes that cannot hold a face (empty, off the image) also get the layout, not an error.
    blank = np.zeros((50, 50, 3), np.uint8)
    assert not aligner.yunet_points(blank, (10.0, 10.0, 10.0, 30.0))[1]
    assert not aligner.yunet_points(blank, (500.0, 500.0, 600.0, 600.0))[1]


def test_shifted_moves_the_points_and_equality() -> None:
    pts = np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]], np.float32)
    d = Detection(5, 10, 35, 50, 0.9, "yunet", pts)
    s = d.shifted(-5, 2, 2.0, source="yunet-pad")
    assert s.box == (0.0, 24.0, 60.0, 104.0) and s.source == "yunet-pad"
    np.testing.assert_allclose(s.landmarks, (pts + [-5, 2]) * 2)
    assert Detection(0, 0, 1, 1, 1.0, "hog").shifted(1, 1).landmarks is None
    assert d == Detection(5, 10, 35, 50, 0.9, "yunet", pts.copy()) and hash(d) == hash(d.shifted(0, 0))
    assert d != Detection(5, 10, 35, 50, 0.9, "yunet", pts + 1) and d != Detection(5, 10, 35, 50, 0.9, "yunet")
    assert not d.landmarks.flags.writeable
    with pytest.raises(ValueError, match="5, 2"):
        Detection(0, 0, 1, 1, 1.0, "yunet", np.zeros((4, 2)))


def test_tiny_grey_odd_and_huge_images(photos, yunet) -> None:
    import cv2

    for shape in [(1, 1, 3), (1, 500, 3), (700, 1, 3), (31, 17, 3), (5, 5)]:
        assert yunet.detect(np.zeros(shape, np.uint8)) == []
    image = load_image(photos[2])
    ref = _central(yunet.detect(image), image.shape)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    assert yunet.detect(grey) and yunet.detect(np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]))
    odd = np.ascontiguousarray(image[3:244, 7:236])  # odd sizes: 241 x 229
    d = _central(yunet.detect(odd), odd.shape)
    assert iou(d.shifted(7, 3).box, ref.box) > 0.8
    # A 3000-px photo: detected on a 1280-px copy, where the face (~470 px) is too big for YuNet's box and
    # points and is found again on a smaller crop; box and points come back in full-size pixels.
    big = cv2.resize(image, None, fx=12, fy=12, interpolation=cv2.INTER_LINEAR)
    d = _central(yunet.detect(big), big.shape)
    assert iou(d.shifted(0, 0, 1 / 12).box, ref.box) > 0.7
    eye_span = np.linalg.norm(ref.landmarks[1] - ref.landmarks[0])
    assert np.linalg.norm(d.landmarks / 12 - ref.landmarks, axis=1).max() < 0.25 * eye_span
    faces = detect_and_align(grey, recipe=ARCFACE_YUNET_112, faces="center")
    assert len(faces) == 1 and faces[0].chip.shape == (112, 112, 3)


def test_tiny_faces_are_found_on_the_upscaled_retry(photos, yunet) -> None:
    """A whole photo shrunk to a few dozen pixels (a ~12 px face): too small for one pass, found at twice the size."""
    import cv2

    one_pass = YuNetDetector(retry_upscale=None)
    retried = 0
    for path in photos[:4]:
        image = load_image(path)
        for side in (40, 32, 28):
            small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
            if one_pass.detect(small):
                continue
            found = yunet.detect(small)
            assert len(found) == 1 and found[0].source == "yunet-up2", (path.name, side)
            assert found[0].x1 <= side and found[0].y1 <= side  # in the image's own pixels
            retried += 1
    assert retried >= 4


def test_sp5_on_yunet_boxes_gives_dlibs_chips(photos, dlib_ref) -> None:
    """dlib's chip from YuNet's (mapped) box is, for dlib's ResNet, the chip from HOG's box."""
    hog = FaceAligner(AlignConfig(faces=FacePolicy.center))
    yn = FaceAligner(AlignConfig(detector="yunet", faces=FacePolicy.center))
    assert yn.config.recipe == DLIB_CHIP_150
    dists = []
    for path in photos[:8]:
        image = load_image(path)
        a, b = hog(image), yn(image)
        assert len(a) == len(b) == 1 and b[0].detector == "yunet"
        assert b[0].landmarks.shape == (5, 2)
        dists.append(np.linalg.norm(dlib_ref.descriptor(a[0].chip) - dlib_ref.descriptor(b[0].chip)))
    assert np.median(dists) < 0.08 and max(dists) < 0.2  # dlib's same-person threshold is 0.6


def test_sp5_box_mapping() -> None:
    yunet = Detection(100, 100, 200, 230, 0.9, "yunet-up2")
    x0, y0, x1, y1 = sp5_box(yunet)
    a, b, c, d = YUNET_TO_SP5_BOX
    assert (x0, y0, x1, y1) == pytest.approx((100 + 100 * a, 100 + 130 * b, 200 + 100 * c, 230 + 130 * d))
    hog = Detection(100, 100, 200, 200, 0.9, "hog")
    assert sp5_box(hog) == hog.box


def test_cut_for_the_other_landmark_family(photos) -> None:
    """A YuNet aligner asked for dlib's chip finds sp5's points on the box, as a dlib aligner does."""
    image = load_image(photos[3])
    yn = FaceAligner(AlignConfig(recipe=ARCFACE_YUNET_112))
    face = yn(image, faces="center")[0]
    dlib_aligner = FaceAligner(AlignConfig(detector="yunet"))
    np.testing.assert_array_equal(yn.cut(image, face.box, face.landmarks, DLIB_CHIP_150),
                                  dlib_aligner.align_box(image, face.box).chip)
    back = dlib_aligner.cut(image, face.box, dlib_aligner.align_box(image, face.box).landmarks, ARCFACE_YUNET_112)
    assert back.shape == (112, 112, 3)


def test_detector_names_and_auto_chain() -> None:
    assert "yunet" in DETECTORS
    assert isinstance(make_detector("yunet"), YuNetDetector)
    auto = make_detector("auto")
    assert isinstance(auto, ChainDetector) and auto.name == "hog+hog-pad+yunet+mmod"


def test_pickles_without_its_network(photos) -> None:
    det = YuNetDetector()
    image = load_image(photos[4])
    first = det.detect(image)
    assert det._net is not None
    copy = pickle.loads(pickle.dumps(det))
    assert copy._net is None and copy.detect(image) == first


def test_config_resolves_the_recipes_own_detector() -> None:
    assert AlignConfig().detector == "hog"
    assert AlignConfig(recipe=ARCFACE_YUNET_112).detector == "yunet"
    assert AlignConfig(recipe=ARCFACE_TEMPLATE_112).detector == "hog"
    assert AlignConfig(detector="mmod", recipe=ARCFACE_YUNET_112).detector == "mmod"
    assert AlignConfig(recipe=ARCFACE_YUNET_112) == AlignConfig(detector="yunet", recipe=ARCFACE_YUNET_112)


def test_detection_cache_keys() -> None:
    # Unchanged from before YuNet, so existing caches stay valid.
    assert det_key(AlignConfig()) == "hog|all|sp5|v1"
    assert det_key(AlignConfig(detector="mmod", faces=FacePolicy.center)) == "mmod|center|sp5|v1"
    assert det_key(AlignConfig(faces=FacePolicy.center, recipe=ARCFACE_TEMPLATE_112)) == "hog|center|sp5|v1"
    # New: YuNet's points, and "auto" (which now includes YuNet) apart from its old cache.
    assert det_key(AlignConfig(faces=FacePolicy.center, recipe=ARCFACE_YUNET_112)) == "yunet|center|yn5|v1"
    assert det_key(AlignConfig(detector="hog", recipe=ARCFACE_YUNET_112)) == "hog|all|yn5|v1"
    assert det_key(AlignConfig(detector="yunet")) == "yunet|all|sp5|v1"
    assert det_key(AlignConfig(detector="auto")) != "auto|all|sp5|v1"


def test_spawned_workers(lfw) -> None:
    files = sorted(lfw.glob("B*/*_0001.jpg"))[:10]
    config = AlignConfig(faces=FacePolicy.center, recipe=ARCFACE_YUNET_112)
    serial = list(align_files(files, config, workers=1))
    parallel = list(align_files(files, config, workers=2))
    assert [r.path for r in parallel] == files and all(r.error is None for r in parallel)
    for s, p in zip(serial, parallel):
        assert len(p.faces) == 1 and p.faces[0].detector.startswith("yunet")
        np.testing.assert_allclose(p.faces[0].landmarks, s.faces[0].landmarks, atol=1e-3)
        assert np.abs(p.faces[0].chip.astype(int) - s.faces[0].chip).max() <= 1
