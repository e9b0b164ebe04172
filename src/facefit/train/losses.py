"""Metric-learning losses: thin wrappers over pytorch-metric-learning, composed by config.

Margins come in radians (pytorch-metric-learning's ArcFace wants degrees). The
classification losses own a weight matrix ``W`` (embedding x classes) that
``init_head_from_means`` can start at each person's mean pretrained embedding,
so fine-tuning begins from a head that already agrees with the backbone instead
of tearing the embedding apart to fit random class vectors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facefit.train.config import LossConfig

CLASSIFICATION = ("arcface", "cosface", "subcenter-arcface", "softmax")


class MetricLoss(nn.Module):
    """``loss(embeddings, labels)``; ``head`` is the class-weight parameter (None for triplet).

    An optional ``pair`` loss (with its own miner) is added with weight ``pair_weight``.
    """

    def __init__(self, inner: nn.Module, miner: nn.Module | None = None, pair: nn.Module | None = None,
                 pair_miner: nn.Module | None = None, pair_weight: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.miner = miner
        self.pair = pair
        self.pair_miner = pair_miner
        self.pair_weight = pair_weight

    @property
    def head(self) -> nn.Parameter | None:
        return getattr(self.inner, "W", None)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.miner is not None:
            loss = self.inner(embeddings, labels, self.miner(embeddings, labels))
        else:
            loss = self.inner(embeddings, labels)
        if self.pair is not None:
            tuples = self.pair_miner(embeddings, labels) if self.pair_miner is not None else None
            loss = loss + self.pair_weight * self.pair(embeddings, labels, tuples)
        return loss


def build_loss(cfg: LossConfig, n_classes: int, embedding_dim: int) -> MetricLoss:
    """The configured loss for ``n_classes`` persons and ``embedding_dim``-D embeddings."""
    from pytorch_metric_learning import losses, miners

    if cfg.kind == "arcface":
        inner = losses.ArcFaceLoss(n_classes, embedding_dim, margin=math.degrees(cfg.margin), scale=cfg.scale)
    elif cfg.kind == "subcenter-arcface":
        inner = losses.SubCenterArcFaceLoss(num_classes=n_classes, embedding_size=embedding_dim,
                                            margin=math.degrees(cfg.margin), scale=cfg.scale,
                                            sub_centers=cfg.sub_centers)
    elif cfg.kind == "cosface":
        inner = losses.CosFaceLoss(n_classes, embedding_dim, margin=cfg.margin, scale=cfg.scale)
    elif cfg.kind == "softmax":
        inner = losses.NormalizedSoftmaxLoss(n_classes, embedding_dim, temperature=1.0 / cfg.scale)
    else:
        inner = losses.TripletMarginLoss(margin=cfg.triplet_margin)
        miner = miners.TripletMarginMiner(margin=cfg.triplet_margin, type_of_triplets="semihard")
        return MetricLoss(inner, miner)
    if cfg.pair_weight:
        # Multi-similarity (Wang et al. 2019): positives below the pivot and negatives above it are weighted
        # by how hard they are; its miner keeps the informative pairs of each P x K batch.
        pair = losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=cfg.pair_base)
        return MetricLoss(inner, pair=pair, pair_miner=miners.MultiSimilarityMiner(epsilon=0.1),
                          pair_weight=cfg.pair_weight)
    return MetricLoss(inner)


@torch.no_grad()
def init_head_from_means(loss: MetricLoss, embeddings: torch.Tensor, labels: torch.Tensor,
                         sub_centers: int = 1, generator: torch.Generator | None = None) -> None:
    """Set each class vector to the normalised mean embedding of that person's images.

    Sub-centres of one class start at its mean plus a little noise, so they can split.
    """
    head = loss.head
    if head is None:
        return
    n_classes = int(labels.max()) + 1
    e = F.normalize(embeddings.float(), dim=1)
    sums = torch.zeros(n_classes, e.shape[1]).index_add_(0, labels, e)
    means = F.normalize(sums, dim=1)  # (classes, dim)
    if head.shape[0] == e.shape[1] and head.shape[1] == n_classes * sub_centers:
        cols = means.repeat_interleave(sub_centers, 0)  # class-major, as SubCenterArcFaceLoss reads them
        if sub_centers > 1:
            cols = F.normalize(cols + 0.01 * torch.randn(cols.shape, generator=generator), dim=1)
        head.copy_(cols.T.to(head.dtype))
    elif head.shape == (n_classes, e.shape[1]):
        head.copy_(means.to(head.dtype))
    else:
        raise ValueError(f"head of shape {tuple(head.shape)} does not fit {n_classes} classes x {e.shape[1]}-D")
