"""Template alignment: five facial points mapped onto a fixed template by a least-squares similarity.

insightface's models (ArcFace IResNet, MobileFaceNet) are trained on 112x112 crops
made this way: the eye centres, the nose tip and the mouth corners are moved as
close as a rotation, a uniform scale and a shift allow to the template points
below (insightface's ``arcface_dst``). facefit takes the five points from YuNet
(the default) or, on explicit request, dlib's 68-point predictor (``five_points``).
Pure numpy: no I/O, no dlib.
"""

from __future__ import annotations

import numpy as np

# insightface's 112x112 template: image-left eye, image-right eye, nose tip, left and right mouth corner.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def five_points(shape68: np.ndarray) -> np.ndarray:
    """The template's five points from dlib's 68 landmarks: eye centres (6 points each), nose tip, mouth corners."""
    p = np.asarray(shape68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the rotation + uniform scale + shift taking ``src`` points closest to ``dst``.

    Least squares without reflection (Umeyama 1991), as insightface's ``SimilarityTransform.estimate``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0  # the best orthogonal map would be a reflection: take the best rotation instead
    rot = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    scale = float((sig * np.diag(sign)).sum() / var) if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def template_for(size: int) -> np.ndarray:
    """The ArcFace template for a ``size`` x ``size`` chip (112 is insightface's own)."""
    return ARCFACE_112 * (size / 112.0)
