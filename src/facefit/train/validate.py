"""Validation during training: verification metrics on a pairs file, and a held-out-persons loss.

The pairs' chips are cut exactly as ``facefit eval`` cuts them (HOG, the face
nearest the centre, the median-box fallback), so the numbers logged after each
epoch are the numbers ``facefit eval --model RUN`` reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facefit.align.aligner import AlignConfig, FacePolicy
from facefit.align.cached import cached_chips
from facefit.align.recipe import AlignRecipe
from facefit.data.pairs import PairSet, read_pairs
from facefit.distances import paired_distances
from facefit.io.cache import EvalCache
from facefit.io.progress import ProgressFactory, no_progress
from facefit.models.base import FaceEmbedder


def held_out_pairs(labels: np.ndarray, seed: int, max_pairs: int = 3000
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Verification pairs among persons labelled ``labels``: (a, b, same, folds) index arrays.

    Same-person pairs (at most ``max_pairs``, drawn with ``seed``) and as many random different-person
    ones; folds group whole persons (label mod 10), so no threshold is chosen on a person it is tested on.
    """
    rng = np.random.default_rng(seed)
    pos = [(i, j) for k in np.unique(labels) for idx in [np.flatnonzero(labels == k)]
           for n, i in enumerate(idx) for j in idx[n + 1:]]
    if len(pos) > max_pairs:
        pos = [pos[i] for i in rng.choice(len(pos), max_pairs, replace=False)]
    neg: set[tuple[int, int]] = set()
    tries = 0
    while len(neg) < len(pos) and tries < 100 * max(1, len(pos)):
        i, j = sorted(rng.choice(len(labels), 2, replace=False).tolist())
        if labels[i] != labels[j]:
            neg.add((i, j))
        tries += 1
    pairs = pos + sorted(neg)
    a = np.array([i for i, _ in pairs], dtype=np.int64)
    b = np.array([j for _, j in pairs], dtype=np.int64)
    same = np.array([True] * len(pos) + [False] * len(neg))
    return a, b, same, labels[a] % 10


@dataclass
class PairsValidator:
    pairs: PairSet
    chips: np.ndarray  # one per unique image
    a: np.ndarray  # per pair, index into chips
    b: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    no_face: int

    @classmethod
    def build(cls, pairs_file: Path, root: Path, recipe: AlignRecipe, cache: EvalCache, *,
              workers: int | None = None, progress: ProgressFactory = no_progress) -> PairsValidator:
        pairs = read_pairs(pairs_file, root)
        images = pairs.images()
        got = cached_chips(images, AlignConfig(detector="hog", faces=FacePolicy.center, recipe=recipe), cache,
                           workers=workers, progress=progress)
        index = {p: i for i, p in enumerate(images)}
        return cls(pairs, got.chips, np.array([index[p.a] for p in pairs.pairs]),
                   np.array([index[p.b] for p in pairs.pairs]), np.array([p.same for p in pairs.pairs]),
                   np.array([p.fold for p in pairs.pairs]), len(got.no_face))

    @classmethod
    def from_held_out(cls, chips: np.ndarray, labels: np.ndarray, seed: int, max_pairs: int = 3000) -> PairsValidator:
        """Verification pairs among held-out persons: same-person pairs and as many random different ones.

        Folds group whole persons, so no threshold is chosen on a person it is tested on.
        """
        a, b, same, folds = held_out_pairs(labels, seed, max_pairs)
        empty = PairSet([], Path("held-out persons"), "held-out", Path("."))
        return cls(empty, chips, a, b, same, folds, 0)

    @property
    def n_pairs(self) -> int:
        return len(self.a)

    def __call__(self, model: FaceEmbedder, metric: str) -> dict[str, Any]:
        """Verification metrics of ``model`` (thresholds in distance units)."""
        from facefit.eval.metrics import verification_metrics
        from facefit.eval.run import to_distance_units

        emb = model.embed(self.chips)
        dist = paired_distances(emb[self.a], emb[self.b], metric)
        return to_distance_units(verification_metrics(-dist, self.same, self.folds))


@torch.no_grad()
def prototype_loss(model: FaceEmbedder, chips: np.ndarray, labels: np.ndarray, scale: float = 32.0) -> float:
    """Cross-entropy of each face against the leave-one-out mean embedding of every held-out person.

    Held-out persons are not in the training head, so this measures how well unseen
    people cluster, which is what verification needs.
    """
    e = F.normalize(torch.from_numpy(model.embed(chips)).double(), dim=1)
    y = torch.from_numpy(labels)
    n_cls = int(y.max()) + 1
    sums = torch.zeros(n_cls, e.shape[1], dtype=e.dtype).index_add_(0, y, e)
    counts = torch.bincount(y, minlength=n_cls).to(e.dtype)
    protos = sums.unsqueeze(0).expand(len(e), -1, -1).clone()
    protos[torch.arange(len(e)), y] -= e  # leave the face itself out of its own prototype
    cnt = counts.unsqueeze(0).expand(len(e), -1).clone()
    cnt[torch.arange(len(e)), y] -= 1
    valid = cnt[torch.arange(len(e)), y] > 0  # a person with one image has no prototype left
    logits = scale * torch.einsum("nd,ncd->nc", e, F.normalize(protos, dim=2))
    logits[cnt == 0] = -1e9
    if not valid.any():
        return float("nan")
    return float(F.cross_entropy(logits[valid], y[valid]))
