"""The embedding contract: everything that decides what an embedding means.

An embedding is only comparable with another made under the same contract: same
architecture, same weights, same alignment and input normalisation. Every stored
embedding records the contract id, and a consumer refuses to mix ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from facefit.align.recipe import AlignRecipe

PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class EmbeddingContract:
    """Preprocessing and output facts of one model, as plain data.

    The input pixel ``p`` of channel ``c`` (RGB, 0-255) is fed as
    ``(p - mean[c]) / std[c]``; dlib's ResNet uses its stored means and 256.
    """

    architecture: str
    input_size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    align: AlignRecipe
    embedding_dim: int
    normalized: bool  # whether the model's raw output is L2-normalised
    weights_sha256: str | None  # digest of the weight file; None for random init
    preprocess_version: int = PREPROCESS_VERSION
    # Each face's embedding is the mean of the chip's and its mirror image's (test-time flip): a
    # mirror-symmetric embedding, at twice the cost.
    flip_average: bool = False
    # Metadata below does not change the embedding, so it is not part of the id.
    name: str = field(default="", compare=False)
    distance: str = field(default="euclidean", compare=False)  # the model's native metric
    thresholds: dict[str, float] = field(default_factory=dict, compare=False)
    licence: str = field(default="unknown", compare=False)
    source: str = field(default="", compare=False)
    # An ensemble's members: [{"id", "name", "weight"}, ...]; their ids and weights are in the ensemble's
    # weights_sha256, so the id changes with them.
    members: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Means and stds are float32 in every framework: keep ~7 significant digits so the
        # same numbers read from a float32 file and written in Python give the same id.
        for name in ("mean", "std"):
            object.__setattr__(self, name, tuple(float(f"{float(v):.7g}") for v in getattr(self, name)))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    _ID_FIELDS = (
        "architecture", "input_size", "mean", "std", "align", "embedding_dim",
        "normalized", "weights_sha256", "preprocess_version",
    )

    @property
    def id(self) -> str:
        """A short, stable id derived from the fields that shape the embedding."""
        data = asdict(self)
        payload = {k: data[k] for k in self._ID_FIELDS}
        if self.flip_average:  # only when set, so the ids of every earlier contract stay as they were
            payload["flip_average"] = True
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=list)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return f"{self.architecture}:{digest}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["id"] = self.id
        data["members"] = [dict(m) for m in self.members]
        if not self.members:
            del data["members"]  # single models' JSON stays as it was
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingContract:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"id"}
        if unknown:
            raise ValueError(f"unknown contract fields: {', '.join(sorted(unknown))}")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["input_size"] = tuple(kwargs["input_size"])
        kwargs["mean"] = tuple(kwargs["mean"])
        kwargs["std"] = tuple(kwargs["std"])
        kwargs["align"] = AlignRecipe(**kwargs["align"])
        kwargs["members"] = tuple(dict(m) for m in kwargs.get("members", ()))
        contract = cls(**kwargs)
        if "id" in data and data["id"] != contract.id:
            raise ValueError(f"contract id {data['id']} does not match its fields ({contract.id})")
        return contract

    @classmethod
    def from_json(cls, text: str) -> EmbeddingContract:
        return cls.from_dict(json.loads(text))

    def with_weights(self, sha256: str | None) -> EmbeddingContract:
        return replace(self, weights_sha256=sha256)

    def identification_threshold(self, metric: str | None = None) -> tuple[float | None, str]:
        """The threshold for open-set 1:N search, and where it comes from.

        A 1:N search takes the best of N comparisons, so a stranger passes far more
        often than in one 1:1 comparison: a strict threshold calibrated at FAR 1e-3
        (``"<metric>@far_1e-3"``) is preferred over the 1:1 one when the model has it.
        """
        metric = metric or self.distance
        strict = self.thresholds.get(f"{metric}@far_1e-3")
        if strict is not None:
            return float(strict), f"the model's {metric} threshold at FAR 1e-3 (calibrated on its validation pairs)"
        own = self.thresholds.get(metric)
        if own is not None:
            return float(own), f"the model's own {metric} threshold"
        return None, f"none: the model has no {metric} threshold of its own"


def verification_threshold(contract: EmbeddingContract, given: float | None = None,
                           metric: str | None = None) -> tuple[float | None, str]:
    """The 1:1 threshold to use, and where it comes from: the one given, else the model's own.

    (1:N search has a stricter one: ``EmbeddingContract.identification_threshold``.)
    """
    if given is not None:
        return float(given), "given"
    metric = metric or contract.distance
    own = contract.thresholds.get(metric)
    if own is not None:
        return float(own), f"the model's own {metric} threshold"
    return None, f"none: the model has no {metric} threshold of its own"
