"""The exported fine-tuned model: a facefit model folder with thresholds and a model card."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from facefit.models.artifact import save_model
from facefit.models.base import FaceEmbedder
from facefit.train.adapters import merge_adapters
from facefit.train.config import TrainConfig


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _thresholds(metric: str, best: float | None, far_1e3: float | None) -> dict[str, float]:
    """1:1 uses the best-accuracy threshold; 1:N search needs the stricter FAR 1e-3 one."""
    out = {} if best is None else {metric: best}
    if far_1e3 is not None:
        out[f"{metric}@far_1e-3"] = far_1e3
    return out


def export_model(model: FaceEmbedder, cfg: TrainConfig, run_dir: Path, metrics: dict[str, Any], best_epoch: int,
                 data_digest: str, train_set: Any, training_precision: str = "fp32") -> Path:
    """Write ``run_dir/model``: weights, contract (with calibrated thresholds) and MODEL_CARD.md."""
    thr = _finite(metrics.get("threshold"))
    base = model.contract
    model.contract = replace(
        base, name=f"{cfg.base}-finetuned:{run_dir.name}", distance=cfg.distance,
        thresholds=_thresholds(cfg.distance, thr, _finite(metrics.get("threshold_at_far_1e-3"))),
        licence=f"weights derived from {base.name or cfg.base} ({base.licence}); the training data's terms also "
                f"apply",
        source=f"facefit train, run {run_dir.name}")
    calibration = {
        "metric": cfg.distance,
        "threshold_best_accuracy": thr,
        "threshold_far_1e-3": _finite(metrics.get("threshold_at_far_1e-3")),
        "threshold_far_1e-2": _finite(metrics.get("threshold_at_far_1e-2")),
        "calibrated_on": str(cfg.data.val_pairs) if cfg.data.val_pairs else None,
        "accept": "distance <= threshold",
    }
    keep = ("accuracy", "accuracy_std", "auc", "eer", "val", "far", "tar_at_far_1e-2", "tar_at_far_1e-3",
            "tar_at_far_1e-4", "n_pairs")
    card = {
        "base": cfg.base, "best_epoch": best_epoch, "train_data": [str(p) for p in cfg.data.train],
        "train_data_sha256": data_digest, "train_faces": len(train_set), "train_persons": train_set.n_persons,
        "validation_pairs": str(cfg.data.val_pairs) if cfg.data.val_pairs else None,
        "validation_metrics": {k: _finite(metrics.get(k)) for k in keep if k in metrics},
        "config_digest": cfg.digest(), "training_precision": training_precision,
    }
    merge_adapters(model)  # the artefact is the plain base architecture
    out = save_model(model, run_dir / "model", overwrite=True,
                     metadata={"calibration": calibration, "card": card, "config": cfg.model_dump(mode="json")})
    (out / "MODEL_CARD.md").write_text(_card_markdown(model, cfg, calibration, card))
    return out


def _card_markdown(model: FaceEmbedder, cfg: TrainConfig, calibration: dict, card: dict) -> str:
    m = card["validation_metrics"]
    lines = [
        f"# {model.contract.name}", "",
        f"Fine-tuned from `{cfg.base}` with facefit ({cfg.loss.kind}, margin {cfg.loss.margin} rad, scale "
        f"{cfg.loss.scale}; {cfg.guard.distill_kind} distillation weight {cfg.guard.distill_weight}, "
        f"L2-SP {cfg.guard.l2sp_weight}, "
        f"{cfg.guard.freeze_stages} frozen stage(s)"
        + (f"; the later stages trained as rank-{cfg.guard.adapter_rank} adapters, merged into the weights"
           if cfg.guard.adapter_rank else "")
        + (f"; anchor faces distilled from {', '.join(str(a) for a in cfg.guard.anchors)}" if cfg.guard.anchors
           else "") + ").", "",
        f"- contract: `{model.contract.id}`",
        f"- training data: {', '.join(card['train_data'])} ({card['train_faces']} faces of {card['train_persons']} "
        f"persons; sha256 {card['train_data_sha256'][:12]})",
        f"- best epoch: {card['best_epoch']}",
        f"- trained at: {card.get('training_precision', 'fp32')} (validation and calibration embed in fp32)",
        f"- licence: {model.contract.licence}",
        "",
        "## Validation",
        "",
        f"Pairs: {card['validation_pairs'] or 'none given'}; {cfg.distance} distance.",
        "",
        "| metric | value |", "|---|---|",
        *[f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in m.items()],
        "",
        "## Thresholds (accept when distance <= threshold)",
        "",
        "```json",
        json.dumps(calibration, indent=2),
        "```",
        "",
        "Measured on validation pairs of the target population; re-calibrate on your own data with "
        "`facefit eval` before deployment.",
    ]
    return "\n".join(lines) + "\n"
