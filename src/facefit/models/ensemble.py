"""Ensembles as models: several face-embedding networks read the same face, each from its own chip.

The ensemble's embedding is the concatenation of its members' L2-normalised embeddings,
member ``i`` scaled by ``sqrt(w_i)`` with the weights summing to 1. Its cosine similarity
is then exactly the weighted mean of the members' cosine similarities, so it works
wherever a cosine model works (gallery, search, eval, serve) with no special case.

Z-normalising each member's scores by its impostor spread before summing them is the
same ranking as weights proportional to ``1 / std`` (the shift cancels in every
threshold), so "z-normalised" ensembles are weight choices too (``fit_weights``).

Architecture only: loading and saving live in ``facefit.models.ensemble_io``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from facefit.align.recipe import AlignRecipe
from facefit.errors import PrecisionError
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract
from facefit.models.precision import PrecisionChoice

ARCHITECTURE = "ensemble"


def normalise_weights(weights: Sequence[float], n: int) -> tuple[float, ...]:
    """Weights as given, scaled to sum to 1; each must be a finite number above 0."""
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weight(s) for {n} member(s)")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise ValueError(f"ensemble weights must be finite and above 0, got {list(weights)}")
    total = float(sum(weights))
    return tuple(float(w) / total for w in weights)


def ensemble_contract(members: Sequence[FaceEmbedder], weights: Sequence[float], *, name: str = "",
                      thresholds: dict[str, float] | None = None) -> EmbeddingContract:
    """The contract of an ensemble: its id follows the members' contract ids and the weights."""
    weights = normalise_weights(weights, len(members))
    first = members[0].contract
    described = tuple({"id": m.contract.id, "name": m.contract.name or m.contract.architecture,
                       "weight": round(w, 6), "align": m.contract.align.label}
                      for m, w in zip(members, weights))
    # The members' ids and weights stand in for a weight file's digest, so they enter the id.
    digest = hashlib.sha256(json.dumps([[d["id"], d["weight"]] for d in described]).encode()).hexdigest()
    return EmbeddingContract(
        architecture=ARCHITECTURE,
        input_size=first.input_size,
        mean=first.mean,
        std=first.std,
        align=first.align,  # the first member's recipe decides the detector; the others cut their own chips
        embedding_dim=sum(m.embedding_dim for m in members),
        normalized=True,
        weights_sha256=digest,
        name=name or "+".join(d["name"] for d in described),
        distance="cosine",
        thresholds=dict(thresholds or {}),
        licence="; ".join(f"{d['name']}: {m.contract.licence}" for d, m in zip(described, members)),
        source="facefit ensemble",
        members=described,
    )


class EnsembleEmbedder(FaceEmbedder):
    """Weighted concatenation of normalised member embeddings; each member sees its own chips."""

    def __init__(self, members: Sequence[FaceEmbedder], weights: Sequence[float],
                 contract: EmbeddingContract | None = None) -> None:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        super().__init__(contract or ensemble_contract(members, weights))
        self.members = nn.ModuleList(members)
        self.weights = normalise_weights(weights, len(members))

    @property
    def recipes(self) -> tuple[AlignRecipe, ...]:
        return tuple(dict.fromkeys(m.contract.align for m in self.members))

    def set_precision(self, precision: str | None = None) -> None:
        """Each member runs at ``precision``; under ``auto`` each settles its own."""
        super().set_precision(precision)
        for m in self.members:
            m.set_precision(precision)

    @property
    def precision(self) -> str:
        """The members' precisions, one word when they agree (``fp32``), else joined (``bf16+fp32``)."""
        return "+".join(dict.fromkeys(m.precision for m in self.members))

    def resolve_precision(self, chips: np.ndarray | None = None, *, remeasure: bool = False,
                          remember: bool = True) -> PrecisionChoice:
        """Each member settles its own precision on ``chips`` (one recipe shared by all members)."""
        if len(self.recipes) > 1:
            raise PrecisionError(f"an ensemble's members settle their precision on their own chips ("
                                 f"{', '.join(r.label for r in self.recipes)}): at its first embedding, or "
                                 f"member by member")
        for m in self.members:
            m.resolve_precision(chips, remeasure=remeasure, remember=remember)
        return PrecisionChoice(self.precision, "members", reason="each member settles its own")

    def warm_up(self) -> None:
        for m in self.members:
            m.warm_up()

    def known_precision(self) -> str | None:
        known = [m.known_precision() for m in self.members]
        return None if None in known else "+".join(dict.fromkeys(known))  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("an ensemble's members need different chips of the same face; use embed_views or "
                        "embed_faces")

    def embed(self, chips: np.ndarray | Sequence[np.ndarray], batch_size: int = 64,
              on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Only when every member shares one recipe; otherwise chips of one kind cannot feed them all."""
        if len(self.recipes) > 1:
            raise ValueError(f"this ensemble needs {len(self.recipes)} kinds of chips of each face "
                             f"({', '.join(r.label for r in self.recipes)}); use embed_views or embed_faces")
        return self.embed_views({self.recipes[0]: np.asarray(chips)}, batch_size, on_batch)

    def embed_views(self, views: Mapping[AlignRecipe, np.ndarray], batch_size: int = 64,
                    on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        parts = [m.embed(views[m.contract.align], batch_size=batch_size) for m in self.members]
        if on_batch is not None:
            on_batch(len(parts[0]))
        return combine(parts, self.weights)


def combine(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The ensemble embedding from its members' embeddings of the same faces (rows): each L2-normalised,
    scaled by ``sqrt(weight)``, concatenated."""
    out = []
    for e, w in zip(parts, weights):
        e = np.asarray(e, np.float64)
        out.append(math.sqrt(w) * e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12))
    return np.concatenate(out, axis=-1).astype(np.float32)


def fit_weights(scores: Sequence[np.ndarray], same: np.ndarray) -> tuple[float, ...]:
    """Z-normalisation weights: each member's cosine scores divided by their spread over different-person pairs.

    ``scores[i]`` holds member ``i``'s cosine similarities of the same pairs; ``same`` marks same-person
    pairs. Returns weights summing to 1, proportional to ``1 / std`` of the different-person scores.
    """
    same = np.asarray(same, bool)
    if same.all() or not same.any():
        raise ValueError("fitting ensemble weights needs both same- and different-person pairs")
    stds = [float(np.std(np.asarray(s, np.float64)[~same])) for s in scores]
    if any(not math.isfinite(s) or s <= 0 for s in stds):
        raise ValueError(f"a member's different-person scores do not spread (std {stds}); cannot z-normalise")
    return normalise_weights([1.0 / s for s in stds], len(stds))
