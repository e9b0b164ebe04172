"""The training configuration: typed, validated, and written into every run folder.

Unknown keys and impossible values are errors. Margins are in radians (pytorch-
metric-learning's ArcFace takes degrees; the conversion happens in losses.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facefit.errors import UsageError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _absolute(value: Any) -> Any:
    """Paths made absolute when the config is built, so a run resumes the same data from any folder."""
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    return Path(value).expanduser().absolute() if isinstance(value, Path) else value


class DataConfig(_Section):
    train: list[Path] = Field(default_factory=list, description="identity-folder roots (several are merged)")
    metadata: list[Path] = Field(default_factory=list, description="per-image attribute CSVs, one per root")
    filters: dict[str, list[str]] = Field(default_factory=dict,
                                          description="keep images whose attribute is one of the values")
    aligned: bool = Field(False, description="the images are already aligned chips of the model's size")
    detector: Literal["hog", "auto"] = Field("auto", description="auto: HOG, padded HOG, then MMOD")
    min_images_per_person: int = Field(2, ge=1)
    val_fraction: float | None = Field(None, ge=0.0, lt=0.9, description="persons held out for validation "
                                                                         "(default: 0.1 without val_pairs, else 0)")
    val_pairs: Path | None = Field(None, description="verification pairs scored after every epoch")
    val_root: Path | None = Field(None, description="folder the val pairs' paths are relative to")

    _paths_absolute = field_validator("train", "metadata", "val_pairs", "val_root")(_absolute)

    @property
    def held_out(self) -> float:
        """The fraction of persons held out: as set, else 0.1 when no validation pairs are given."""
        if self.val_fraction is not None:
            return self.val_fraction
        return 0.0 if self.val_pairs is not None else 0.1


class AugmentConfig(_Section):
    flip: bool = True
    brightness: float = Field(0.2, ge=0, le=1)
    contrast: float = Field(0.2, ge=0, le=1)
    gamma: float = Field(0.2, ge=0, le=1)
    saturation: float = Field(0.2, ge=0, le=1)
    hue: float = Field(0.02, ge=0, le=0.5, description="fraction of a full hue turn")
    tint: float = Field(0.1, ge=0, le=0.5, description="per-channel gain spread: the colour casts of faded "
                                                       "prints and white balance")
    greyscale: float = Field(0.05, ge=0, le=1, description="probability of a black-and-white image")
    shift: float = Field(4.0, ge=0, description="pixels")
    scale: float = Field(0.05, ge=0, lt=0.5)
    rotate: float = Field(5.0, ge=0, le=45, description="degrees")
    blur: float = Field(0.1, ge=0, le=1, description="probability of a Gaussian blur")


class LossConfig(_Section):
    kind: Literal["arcface", "cosface", "subcenter-arcface", "softmax", "triplet"] = "arcface"
    margin: float = Field(0.15, ge=0, le=1.0, description="radians for arcface; cosine units for cosface")
    scale: float = Field(32.0, gt=0)
    sub_centers: int = Field(3, ge=1)
    triplet_margin: float = Field(0.2, gt=0)
    head_init: Literal["class-mean", "random"] = "class-mean"
    pair_weight: float = Field(0.0, ge=0, description="weight of a multi-similarity pair loss added to a "
                                                      "classification loss; batches become P persons x K images "
                                                      "(optim.images_per_person)")
    pair_base: float = Field(0.75, ge=-1, le=1, description="the multi-similarity loss's cosine pivot: pairs are "
                                                            "pulled above it and pushed below it")


class OptimConfig(_Section):
    lr: float = Field(1e-4, gt=0, le=1.0)
    head_lr_mult: float = Field(10.0, gt=0)
    layer_lr: Literal["flat", "relative"] = Field(
        "flat", description="relative: each weight tensor's lr scales with its RMS (median tensor: lr), so "
                                "every layer moves by a similar fraction of its size")
    weight_decay: float = Field(5e-4, ge=0)
    warmup: float = Field(0.05, ge=0, lt=1, description="fraction of the steps")
    batch_size: int = Field(128, ge=2)
    images_per_person: int = Field(4, ge=2, description="K of a P x K batch (triplet loss)")
    epochs: int = Field(12, ge=1, description="the schedule: a fixed number of epochs, so the same command gives "
                                             "the same model on any machine")
    time_budget_min: float | None = Field(30.0, gt=0, description="a cap: the run stops (and says so) when it "
                                                                   "would take longer")
    fit_budget: bool = Field(False, description="plan the schedule to end inside time_budget_min from the "
                                                "measured speed (a faster machine then trains more epochs)")
    clip_grad: float | None = Field(5.0, gt=0)
    amp: bool = Field(True, description="bf16 autocast on GPU under precision auto")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the forward passes' autocast: auto is $FACEFIT_PRECISION when set, else bf16 on a "
                            "GPU (with amp) and, on a CPU, bf16 where this machine measured the base model "
                            "1.3x faster in bf16; a resumed run keeps its precision")
    ema: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights, "
                                                    "which is then validated and exported (0: off)")


class GuardConfig(_Section):
    distill_weight: float = Field(10.0, ge=0, description="pull embeddings toward the frozen pretrained model's")
    distill_kind: Literal["feature", "relational"] = Field(
        "feature", description="feature: each face's embedding stays near the pretrained one; relational: the "
                               "batch's pairwise similarities stay near the pretrained ones")
    l2sp_weight: float = Field(0.0, ge=0, description="pull weights toward the pretrained weights")
    freeze_stages: int = Field(3, ge=0, description="freeze the first N stages of the backbone (dlib-resnet: the "
                                                   "stem + 2 of 5 residual stages; faster steps, less forgetting; "
                                                   "0 to train from scratch)")
    anchors: list[Path] = Field(default_factory=list, description="folders of faces of the population the model "
                                                                  "must not forget (never the benchmark): only "
                                                                  "distilled, their identities are not used")
    anchor_batch: int = Field(32, ge=1, description="anchor faces added to every step")
    anchor_weight: float | None = Field(None, ge=0, description="the anchors' distillation weight (default: "
                                                                "guard.distill_weight)")
    bn: Literal["frozen", "train"] = Field("train", description="batch-norm layers: frozen keeps the pretrained "
                                                               "running statistics (small fine-tuning sets); "
                                                               "train updates them from each batch")
    adapter_rank: int = Field(0, ge=0, description="0: train the weights of the stages after the frozen ones; N: "
                                                  "keep them frozen too and learn a rank-N update of each conv and "
                                                  "linear weight there (LoRA), merged into the weights on export")

    _anchors_absolute = field_validator("anchors")(_absolute)

    @property
    def anchor_weight_or_default(self) -> float:
        """The anchors' distillation weight: as set, else the training faces' one."""
        return self.distill_weight if self.anchor_weight is None else self.anchor_weight


# The base `facefit train` starts from when none is named: the one measured best on the Korean pairs
# after fine-tuning while keeping LFW (docs/finetuning.md, "SFace and the ensemble").
DEFAULT_BASE = "sface"


class TrainConfig(_Section):
    base: str = DEFAULT_BASE
    pretrained: bool = Field(True, description="start from the base's pretrained weights; false trains a "
                                               "registered architecture from random weights")
    standardize: bool = Field(True, description="function-preserving re-standardisation before training")
    flip_average: bool = Field(True, description="the model embeds each face as the mean of the chip's and its "
                                                 "mirror image's embeddings (validation and the exported model)")
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    guard: GuardConfig = GuardConfig()
    distance: Literal["cosine", "euclidean"] = Field("cosine", description="for validation, selection and the "
                                                                          "exported model's thresholds")
    select_metric: Literal["accuracy", "auc", "tar_at_far_1e-2", "tar_at_far_1e-3", "val_loss"] = "accuracy"
    early_stop: int | None = Field(None, ge=1, description="epochs without improvement before stopping")
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|(cuda|xpu)(:\d+)?)$",
                        description="auto (a GPU if torch sees one), cpu, cuda, cuda:N, mps or xpu")
    workers: int | None = Field(None, ge=1, description="alignment processes")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.person_batches and self.optim.batch_size % self.optim.images_per_person:
            raise ValueError(f"optim.batch_size ({self.optim.batch_size}) must be a multiple of "
                             f"optim.images_per_person ({self.optim.images_per_person}) for P x K batches "
                             f"(triplet loss or loss.pair_weight)")
        if self.loss.kind == "triplet" and self.loss.pair_weight:
            raise ValueError("loss.pair_weight adds a pair loss to a classification loss; the triplet loss is one "
                             "already")
        if (self.data.val_pairs is None) != (self.data.val_root is None):
            raise ValueError("data.val_pairs and data.val_root go together")
        if self.select_metric == "val_loss" and self.data.held_out == 0:
            raise ValueError("select_metric val_loss needs held-out persons (data.val_fraction > 0)")
        if not self.pretrained and (self.guard.distill_weight or self.guard.freeze_stages):
            raise ValueError("pretrained: false starts from random weights, which the guards would pull toward "
                             "or freeze; set guard.distill_weight=0 and guard.freeze_stages=0")
        if self.guard.adapter_rank and self.guard.l2sp_weight:
            raise ValueError("guard.l2sp_weight pulls trained weights toward the pretrained ones, but with "
                             "guard.adapter_rank those stay frozen; optim.weight_decay pulls the adapters to zero")
        if self.guard.anchors and not self.guard.distill_weight:
            raise ValueError("guard.anchors are distilled toward the frozen pretrained model, which "
                             "guard.distill_weight=0 turns off")
        if self.guard.adapter_rank and not self.pretrained:
            raise ValueError("guard.adapter_rank adapts pretrained weights; pretrained: false has none")
        if self.data.val_pairs is None and self.data.held_out == 0 and self.early_stop:
            raise ValueError("early_stop needs validation: data.val_pairs or data.val_fraction > 0")
        return self

    @property
    def person_batches(self) -> bool:
        """Whether batches are P persons x K images (pair and triplet losses need positives in the batch)."""
        return self.loss.kind == "triplet" or self.loss.pair_weight > 0

    def digest(self) -> str:
        """Hash of everything that shapes the training (not where its data lives)."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"workers"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set {dotted}: {p} is not a section")
    node[parts[-1]] = value


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A config from an optional YAML/JSON file plus dotted overrides (``{"optim.lr": 3e-4}``)."""
    tree: dict[str, Any] = {}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: cannot read config: {' '.join(str(exc).split())}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UsageError(f"{path}: a config must be a mapping of sections, got {type(loaded).__name__}")
        tree = loaded or {}
    for key, value in (overrides or {}).items():
        _set(tree, key, value)
    from facefit.train.recipes import with_base_recipe

    tree = with_base_recipe(tree)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        where = f"{path}: " if path else ""
        raise UsageError(f"{where}invalid training config: {problems}") from None


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "loss.kind=cosface"]`` -> overrides; values are parsed as YAML scalars."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({reason}); quote text, e.g. "
                             f"{key.strip()}='\"...\"'") from None
        if isinstance(value, str) and _NUMBER.match(value):  # YAML 1.1 reads "1e-3" (no dot) as text
            value = float(value) if any(c in value for c in ".eE") else int(value)
        out[key.strip()] = value
    return out
