"""Batched embedding: chips of many faces in, one ``embed_views`` call per full batch."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

from facefit.align.recipe import AlignRecipe
from facefit.models.base import FaceEmbedder

K = TypeVar("K", bound=Hashable)
Views = dict[AlignRecipe, np.ndarray]


class ViewBatcher(Generic[K]):
    """Collects (key, views) items and embeds them ``batch_size`` at a time.

    ``sink(keys, embeddings, flipped=False)`` receives each batch's rows in the order added; with
    ``flip``, the mirror images are embedded too and passed with ``flipped=True``.
    """

    def __init__(self, model: FaceEmbedder, sink: Callable[..., None], *, batch_size: int = 64,
                 flip: bool = False) -> None:
        self.model, self.sink, self.batch_size, self.flip = model, sink, batch_size, flip
        self.keys: list[K] = []
        self.views: list[Views] = []
        self.count = 0

    def add(self, key: K, views: Views) -> None:
        self.keys.append(key)
        self.views.append({r: views[r] for r in self.model.recipes})
        if len(self.keys) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.keys:
            return
        batch = {r: np.stack([v[r] for v in self.views]) for r in self.model.recipes}
        self.sink(self.keys, self.model.embed_views(batch, batch_size=self.batch_size), flipped=False)
        if self.flip:
            mirror = {r: np.ascontiguousarray(v[:, :, ::-1]) for r, v in batch.items()}
            self.sink(self.keys, self.model.embed_views(mirror, batch_size=self.batch_size), flipped=True)
        self.count += len(self.keys)
        self.keys, self.views = [], []
