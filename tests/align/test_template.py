"""insightface's 5-point template crop: the similarity fit against a brute-force reference, and real faces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facefit.align.template import ARCFACE_112, five_points, similarity, template_for


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_recovers_a_known_transform_exactly() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    angle, scale, shift = 0.3, 0.7, np.array([12.0, -5.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    m = similarity(src, src @ (scale * rot).T + shift)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_similarity_is_the_least_squares_fit() -> None:
    """Against a brute-force search over angle and scale (with the optimal shift for each)."""
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    dst = ARCFACE_112 + rng.normal(0, 2, (5, 2))

    def cost(m: np.ndarray) -> float:
        return float(((_apply(m, src) - dst) ** 2).sum())

    def search(angles: np.ndarray, scales: np.ndarray) -> tuple[float, float, float]:
        found = (math.inf, 0.0, 0.0)
        for a in angles:
            for s in scales:
                r = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                t = dst.mean(0) - src.mean(0) @ r.T  # the best shift for this rotation and scale
                found = min(found, (cost(np.hstack([r, t[:, None]])), a, s))
        return found

    _, a0, s0 = search(np.linspace(-math.pi, math.pi, 181), np.linspace(0.05, 3, 120))
    best, _, _ = search(np.linspace(a0 - 0.04, a0 + 0.04, 81), np.linspace(s0 - 0.03, s0 + 0.03, 81))
    assert cost(similarity(src, dst)) <= best + 1e-6


def test_similarity_never_mirrors() -> None:
    src = ARCFACE_112.copy()
    mirrored = src * np.array([-1.0, 1.0])
    m = similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_five_points_and_bad_shapes() -> None:
    pts = np.arange(136, dtype=float).reshape(68, 2)
    five = five_points(pts)
    np.testing.assert_allclose(five[0], pts[36:42].mean(0))
    np.testing.assert_allclose(five[2], pts[30])
    with pytest.raises(ValueError):
        five_points(pts[:5])
    with pytest.raises(ValueError):
        similarity(pts[:5], pts[:4])


def test_real_faces_land_on_insightface_template(data_root: Path) -> None:
    """LFW photos cut with the template recipes: dlib's 68 landmarks, found again in the chip, sit on the template.

    The default template crop takes YuNet's five points; the 68-point predictor's crop is the
    non-commercial opt-in. YuNet's points are defined a little differently (its eye points sit
    about 2 px of 112 above the 68-point eye centres) and are noisier, hence its looser bound.
    """
    import dlib

    from facefit import detect_and_align
    from facefit.align.recipe import ARCFACE_TEMPLATE_112, ARCFACE_YUNET_112, AlignRecipe
    from facefit.io.assets import SHAPE_PREDICTOR_68, verified

    predictor = dlib.shape_predictor(str(verified(SHAPE_PREDICTOR_68)[0]))
    detector = dlib.get_frontal_face_detector()
    photos = sorted((data_root / "lfw" / "images").glob("A*/*_0001.jpg"))[:25]
    recipes = {"yunet": ARCFACE_YUNET_112, "dlib68": ARCFACE_TEMPLATE_112,
               "dlib-chip": AlignRecipe(size=112, padding=0.25)}
    errors: dict[str, list[float]] = {name: [] for name in recipes}
    for name, recipe in recipes.items():
        for photo in photos:
            faces = detect_and_align(photo, faces="center", recipe=recipe)
            chip = faces[0].chip
            assert chip.shape == (112, 112, 3)
            found = detector(chip, 1)
            if not found:
                continue
            shape = predictor(chip, found[0])
            pts = five_points(np.array([(p.x, p.y) for p in shape.parts()], float))
            errors[name].append(np.linalg.norm(pts - template_for(112), axis=1).mean())
    assert len(errors["yunet"]) >= 20 and len(errors["dlib68"]) >= 20
    # Pixels of 112: on the template, up to landmark noise (and, for YuNet, its definition of the points).
    assert np.median(errors["dlib68"]) < 3.5
    assert np.median(errors["yunet"]) < 5.5
    assert np.median(errors["dlib-chip"]) > 10  # the dlib chip that the IResNet used before is far off it
