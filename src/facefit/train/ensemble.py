"""Building an ensemble model: members, weights fitted on held-out persons, calibrated thresholds.

Weights and thresholds are measured on persons none of the fine-tuned members trained on:
by default the persons the first fine-tuned member held out of its own training (the same
draw ``facefit train`` made), or the identity folders given as ``calibrate``. Never on the
validation pairs a user reports on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facefit.errors import UsageError
from facefit.io.cache import EvalCache
from facefit.io.progress import ProgressFactory, no_progress
from facefit.models.base import FaceEmbedder
from facefit.models.ensemble import EnsembleEmbedder, ensemble_contract, fit_weights, normalise_weights
from facefit.models.ensemble_io import MemberSource, save_ensemble

KEEP = ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3", "threshold",
        "threshold_at_far_1e-3", "threshold_at_far_1e-2", "n_pairs")


@dataclass
class EnsembleReport:
    path: Path
    model: EnsembleEmbedder
    weights: tuple[float, ...]
    weights_source: str
    calibration: str  # where weights and thresholds were measured
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # member label / "ensemble" -> metrics
    notes: list[str] = field(default_factory=list)


def member_source(name: str) -> MemberSource:
    """A registered name stays a name; a model folder or a run folder becomes its model folder."""
    from facefit.models.artifact import is_model_dir
    from facefit.models.registry import is_registered

    if is_registered(name):
        return MemberSource(name=name)
    path = Path(name).expanduser()
    if is_model_dir(path):
        return MemberSource(folder=path.resolve())
    if is_model_dir(path / "model"):
        return MemberSource(folder=(path / "model").resolve())
    raise UsageError(f"{name}: an ensemble member must be a registered model or a facefit model or run folder (for "
                     f"another project's checkpoint ARCH=PATH, save it as a model folder first: "
                     f"facefit.save_model(facefit.create_model('ARCH=PATH'), 'DIR'))")


def _run_config(source: MemberSource) -> Any:
    """The training config of a fine-tuned member, or None for a registered or foreign model."""
    from facefit.models.artifact import read_model_meta
    from facefit.train.config import TrainConfig

    if source.folder is None:
        return None
    _, meta = read_model_meta(source.folder)
    cfg = meta.get("config")
    try:
        return TrainConfig.model_validate(cfg) if isinstance(cfg, dict) else None
    except ValueError:
        return None


def calibration_persons(sources: list[MemberSource], calibrate: Path | None) -> tuple[list, str, list[str]]:
    """(persons, description, notes): who weights and thresholds are measured on."""
    from facefit.data.folders import IdentityFolders
    from facefit.train.data import held_out_persons

    notes: list[str] = []
    if calibrate is not None:
        ds = IdentityFolders.scan(calibrate)
        persons = [(p.name, list(p.images)) for p in ds.persons if len(p.images) >= 2]
        return persons, f"identity folders {calibrate}", notes
    configs = [(s, _run_config(s)) for s in sources]
    runs = [(s, c) for s, c in configs if c is not None]
    if not runs:
        return [], "", notes
    first_source, first = runs[0]
    if first.data.held_out <= 0:
        notes.append(f"{first_source.shown} held no persons out of training (it validated on pairs); give "
                     f"calibration persons with --calibrate")
        return [], "", notes
    persons = held_out_persons(first.data, first.seed)
    for s, c in runs[1:]:
        if (c.data.train, c.data.filters, c.seed, c.data.held_out) != \
                (first.data.train, first.data.filters, first.seed, first.data.held_out):
            notes.append(f"warning: {s.shown} did not hold out the same persons as {first_source.shown}; it may have "
                         f"trained on some calibration persons, so the fitted weights favour it")
    where = ", ".join(str(p) for p in first.data.train)
    return persons, f"the {len(persons)} persons of {where} that {first_source.shown} held out of training", notes


def member_scores(members: list[FaceEmbedder], persons: list, cache: EvalCache, *, seed: int = 0,
                  workers: int | None = None, progress: ProgressFactory = no_progress
                  ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Each member's cosine similarities on pairs of ``persons``, with their chips cut as the ensemble cuts them.

    Returns (scores per member, same, folds).
    """
    from facefit.engine.cached import EmbedOptions, embed_images
    from facefit.train.validate import held_out_pairs

    images = [p for _, imgs in persons for p in imgs]
    labels = np.array([k for k, (_, imgs) in enumerate(persons) for _ in imgs], dtype=np.int64)
    a, b, same, folds = held_out_pairs(labels, seed)
    # One detector for every member (the first member's), as the ensemble itself finds faces.
    options = EmbedOptions(detector=members[0].recipes[0].own_detector, faces="largest",
                          workers=workers)
    got = embed_images(images, [(f"m{i}", m) for i, m in enumerate(members)], options, cache, progress=progress)
    scores = []
    for emb in got.embeddings:
        e = np.stack([emb[p] for p in images]).astype(np.float64)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        scores.append(np.sum(e[a] * e[b], axis=1))
    return scores, same, folds


def _metrics(score: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    from facefit.eval.metrics import verification_metrics
    from facefit.eval.run import to_distance_units

    m = to_distance_units(verification_metrics(score - 1.0, same, folds))  # score - 1 = -(cosine distance)
    return {k: m.get(k) for k in KEEP}


def build_ensemble(names: list[str], out_dir: Path, *, weights: list[float] | None = None,
                   calibrate: Path | None = None, cache: EvalCache, workers: int | None = None,
                   progress: ProgressFactory = no_progress, log: Callable[[str], None] = lambda _m: None
                   ) -> EnsembleReport:
    """Load the members, fit weights (z-normalisation) and thresholds on held-out persons, write ``out_dir``."""
    from facefit.models import create_model

    if len(names) < 2:
        raise UsageError("an ensemble needs at least two members")
    if weights is not None:
        try:
            weights = list(normalise_weights(weights, len(names)))
        except ValueError as exc:
            raise UsageError(f"ensemble weights: {exc}") from None
    sources = [member_source(n) for n in names]
    members = [create_model(n) for n in names]
    ids = [m.contract.id for m in members]
    if len(set(ids)) < len(ids):
        raise UsageError("the same model is given twice; an ensemble of a model with itself adds nothing")
    persons, where, notes = calibration_persons(sources, calibrate)
    labels = [m.contract.name or n for m, n in zip(members, names)]
    metrics: dict[str, dict[str, Any]] = {}
    thresholds: dict[str, float] = {}
    if len(persons) >= 2:
        log(f"calibrating on {where}")
        scores, same, folds = member_scores(members, persons, cache, workers=workers, progress=progress)
        if weights is None:
            weights, how = list(fit_weights(scores, same)), "z-normalisation (1 / impostor std) on " + where
        else:
            how = "given"
        for lb, s in zip(labels, scores):
            metrics[lb] = _metrics(s, same, folds)
        fused = sum(w * s for w, s in zip(weights, scores))
        metrics["ensemble"] = m = _metrics(fused, same, folds)
        if m.get("threshold") is not None and math.isfinite(m["threshold"]):
            thresholds["cosine"] = float(m["threshold"])
        if m.get("threshold_at_far_1e-3") is not None and math.isfinite(m["threshold_at_far_1e-3"]):
            thresholds["cosine@far_1e-3"] = float(m["threshold_at_far_1e-3"])
    else:
        notes.append("no calibration persons (no member held persons out, and no --calibrate): equal weights unless "
                     "--weights, and no thresholds of its own")
        if weights is None:
            weights, how = [1.0 / len(members)] * len(members), "equal (nothing to fit them on)"
        else:
            how = "given"
        where = ""
    contract = ensemble_contract(members, weights, name=out_dir.name, thresholds=thresholds)
    model = EnsembleEmbedder(members, weights, contract)
    meta = {"calibration": {"metric": "cosine", "weights": how, "calibrated_on": where or None,
                            "threshold_best_accuracy": thresholds.get("cosine"),
                            "threshold_far_1e-3": thresholds.get("cosine@far_1e-3"),
                            "accept": "distance <= threshold"},
            "held_out_metrics": metrics, "notes": notes}
    path = save_ensemble(model, sources, out_dir, metadata=meta, card=_card(model, labels, how, where, metrics))
    return EnsembleReport(path, model, model.weights, how, where, metrics, notes)


def _card(model: EnsembleEmbedder, labels: list[str], how: str, where: str, metrics: dict) -> str:
    lines = [f"# {model.contract.name}", "",
             "An ensemble: the cosine similarity of two faces is the weighted mean of its members' cosine "
             "similarities; each member cuts its own chip from the same detected face.", "",
             "| member | contract | weight | alignment |", "|---|---|---|---|"]
    lines += [f"| {lb} | `{d['id']}` | {d['weight']:.4f} | {d['align']} |"
              for lb, d in zip(labels, model.contract.members)]
    lines += ["", f"- contract: `{model.contract.id}`", f"- weights: {how}", ""]
    if metrics:
        lines += [f"## Held-out persons ({where})", "", "| model | accuracy | AUC | TAR@FAR=1e-2 | TAR@FAR=1e-3 |",
                  "|---|---|---|---|---|"]
        for lb, m in metrics.items():
            cells = [m.get(k) for k in ("accuracy", "auc", "tar_at_far_1e-2", "tar_at_far_1e-3")]
            lines.append(f"| {lb} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in cells) + " |")
        lines += ["", "## Thresholds (cosine distance; accept when distance <= threshold)", "", "```json",
                  json.dumps(model.contract.thresholds, indent=2), "```"]
    return "\n".join(lines) + "\n"
