"""A verification run: pairs -> cached embeddings (``engine.cached``) -> distances -> metrics.

Images where the detector finds no face keep their pairs (dropping them would
change the protocol). Their chip comes from a fallback box, the median
face box of the images that did get a detection in the same run, scaled to the
image. The 5 landmarks are predicted inside that box, as LFW evaluations usually
do with a central crop. Every such image is listed in the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facefit.align.cached import content_digest
from facefit.data.pairs import PairsError, PairSet, group_labels
from facefit.engine.cached import EmbedOptions, embed_images
from facefit.errors import FacefitError
from facefit.io.cache import EvalCache
from facefit.io.progress import ProgressFactory, no_progress
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract


@dataclass(frozen=True)
class EvalOptions(EmbedOptions):
    """How pairs are embedded (``EmbedOptions``: detector, faces, flip, workers, batch size) and scored."""

    metric: str = "euclidean"  # "euclidean" (L2 on raw embeddings), "cosine" (1 - cos) or "auto" (each model's own)
    subtract_mean: bool = False  # subtract the mean embedding of the other folds' images
    n_folds: int = 10  # for CSV files without a fold column

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "flip": self.flip, "subtract_mean": self.subtract_mean,
                "detector": self.detector or "model", "faces": self.faces}


@dataclass
class ModelEval:
    label: str
    contract: EmbeddingContract
    distances: np.ndarray  # one per pair; lower = more alike
    metric: str = "euclidean"
    total: dict[str, Any] = field(default_factory=dict)
    subgroups: dict[str, dict[str, Any]] = field(default_factory=dict)
    embedded_now: int = 0  # embeddings computed in this run (the rest came from the cache)
    detector: str = "hog"  # the detector this model's faces were found with
    no_face: list[Path] = field(default_factory=list)  # images this model's detector found no face in
    precision: str = "fp32"  # what the embeddings were computed at (fp32, bf16; an ensemble's per member)


@dataclass
class EvalRun:
    pairs: PairSet
    options: EvalOptions
    models: list[ModelEval]
    no_face: list[Path]  # the first model's (the baseline's); each model's are in ModelEval.no_face
    fallback_box: tuple[float, float, float, float]
    data_sha256: str
    detected_now: int
    seconds: dict[str, float]


def evaluate(pairs: PairSet, models: list[tuple[str, FaceEmbedder]], options: EvalOptions, cache: EvalCache,
             *, progress: ProgressFactory = no_progress) -> EvalRun:
    """Score every pair with every model and compute the verification metrics."""
    from facefit.eval.metrics import subgroup_metrics, verification_metrics

    if options.metric not in ("euclidean", "cosine", "auto"):
        raise ValueError(f"unknown metric {options.metric!r}")
    if not models:
        raise ValueError("no model to evaluate")
    images = pairs.images()
    try:
        embedded = embed_images(images, models, options, cache, progress=progress)
    except PairsError:
        raise
    except FacefitError as exc:  # unreadable or undecodable images: a problem of this pairs file's data
        raise PairsError(str(exc)) from None
    data_sha = content_digest(embedded.sha, pairs.root)
    seconds = dict(embedded.seconds)

    # Distances and metrics.
    t0 = time.perf_counter()
    same = np.array([p.same for p in pairs.pairs], dtype=bool)
    folds = np.array([p.fold for p in pairs.pairs], dtype=int)
    groups = group_labels(pairs)
    results = []
    for k, (label, model) in enumerate(models):
        emb = embedded.embeddings[k]
        metric = model_metric(model.contract, options.metric)
        bad = [p for p, e in emb.items() if not np.isfinite(e).all()]
        if bad:
            raise FacefitError(f"{label}: the model gave NaN or infinite embeddings for {len(bad)} image(s) (e.g. "
                               f"{bad[0]}); its weights are damaged")
        dist = _pair_distances(pairs, emb, folds, options, metric)
        total = verification_metrics(-dist, same, folds)
        subs = subgroup_metrics(-dist, same, folds, groups) if groups else {}
        results.append(ModelEval(label, model.contract, dist, metric, to_distance_units(total),
                                 {g: to_distance_units(m) for g, m in subs.items()}, embedded.embedded_now[k],
                                 embedded.detectors[k], embedded.no_face_per_model[k], model.precision))
    seconds["metrics"] = time.perf_counter() - t0
    return EvalRun(pairs, options, results, embedded.no_face, embedded.fallback_box, data_sha,
                   embedded.detected_now, seconds)


def model_metric(contract: EmbeddingContract, asked: str) -> str:
    """The distance a model is scored with: as asked, or with ``auto`` the model's own."""
    return (contract.distance if contract.distance in ("euclidean", "cosine") else "euclidean") \
        if asked == "auto" else asked


def _pair_distances(pairs: PairSet, emb: dict[Path, np.ndarray], folds: np.ndarray,
                    options: EvalOptions, metric: str) -> np.ndarray:
    from facefit.distances import paired_distances

    a = np.stack([emb[p.a] for p in pairs.pairs]).astype(np.float64)
    b = np.stack([emb[p.b] for p in pairs.pairs]).astype(np.float64)
    if options.subtract_mean:
        # Each pair is centred with the mean embedding of the images of the *other* folds, so no test
        # fold ever informs its own normalisation.
        for f in np.unique(folds):
            others = {q for p, fo in zip(pairs.pairs, folds) if fo != f for q in (p.a, p.b)}
            if not others:
                continue
            mean = np.mean([emb[q] for q in others], axis=0)
            sel = folds == f
            a[sel] -= mean
            b[sel] -= mean
    return paired_distances(a, b, metric)


_THRESHOLD_KEYS = ("threshold", "eer_threshold", "fold_thresholds")


def to_distance_units(m: dict[str, Any]) -> dict[str, Any]:
    """Metrics computed on scores (= -distance) with thresholds turned back into distances."""
    out = dict(m)
    for key, value in m.items():
        if key in _THRESHOLD_KEYS or key.startswith("threshold_at_"):
            if isinstance(value, list):
                out[key] = [-float(v) for v in value]
            elif isinstance(value, (int, float)):
                out[key] = -float(value)
    return out
