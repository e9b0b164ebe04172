"""A verification run: pairs -> cached detection -> cached embeddings -> distances -> metrics.

Detection (box + 5 landmarks) is cached by image content and detector settings,
embeddings by image content, model contract and chip provenance, so evaluating
another model on the same data only re-embeds, and a re-run is nearly free.

Images where the detector finds no face keep their pairs (dropping them would
change the protocol). Their chip comes from a fallback box, the median
face box of the images that did get a detection in the same run, scaled to the
image. The 5 landmarks are predicted inside that box, as LFW evaluations usually
do with a central crop. Every such image is listed in the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facefit.align.aligner import AlignConfig, FacePolicy
from facefit.align.batch import CutTask, run_cut_tasks
from facefit.align.cached import (
    ProgressFactory,
    absolute_box,
    content_digest,
    det_key,
    fallback_relative,
    hash_files,
    no_progress,
)
from facefit.align.recipe import AlignRecipe
from facefit.data.pairs import PairsError, PairSet, group_labels
from facefit.errors import FacefitError
from facefit.io.cache import CachedDetection, EvalCache
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract


@dataclass(frozen=True)
class EvalOptions:
    metric: str = "euclidean"  # "euclidean" (L2 on raw embeddings), "cosine" (1 - cos) or "auto" (each model's own)
    flip: bool = False  # average each embedding with its mirror image's
    subtract_mean: bool = False  # subtract the mean embedding of the other folds' images
    n_folds: int = 10  # for CSV files without a fold column
    detector: str | None = None  # None: each model's own (its recipe's detector: hog for dlib, yunet for sface)
    faces: str = "center"  # which face of a multi-face image is the subject
    workers: int | None = None
    batch_size: int = 64

    def align_config(self, model: FaceEmbedder) -> AlignConfig:
        """How ``model``'s faces are found: the detector asked for, else the model's own, and its recipes."""
        recipes = model.recipes
        return AlignConfig(detector=self.detector, faces=FacePolicy(self.faces), recipe=recipes[0],
                           extra_recipes=recipes[1:])

    def detector_for(self, model: FaceEmbedder) -> str:
        return self.align_config(model).detector

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


def _wants_flip(contract: EmbeddingContract, options: EvalOptions) -> bool:
    """Whether to embed mirror images too: a flip-average model's own embedding already includes them."""
    return options.flip and not contract.flip_average


def _emb_key(contract: EmbeddingContract, det_key: str, provenance: str, flipped: bool, precision: str) -> str:
    # fp32 keys are those of caches written before precisions existed; others name theirs.
    tail = "" if precision == "fp32" else f"|{precision}"
    return f"{contract.id}|{det_key}|{provenance}|{'flip' if flipped else 'orig'}{tail}"


Views = dict[AlignRecipe, np.ndarray]


class _Embedder:
    """Batches each model's chips (one per recipe it needs), embeds them and their mirror images, caches them."""

    def __init__(self, models: list[tuple[str, FaceEmbedder]], cache: EvalCache, options: EvalOptions,
                 det_key: str) -> None:
        self.models, self.cache, self.options, self.det_key = models, cache, options, det_key
        self.pending: list[list[tuple[str, str, Views]]] = [[] for _ in models]
        self.count = [0] * len(models)

    def add(self, i: int, sha: str, provenance: str, chips: Views) -> None:
        self.pending[i].append((sha, provenance, chips))
        if len(self.pending[i]) >= self.options.batch_size:
            self.flush(i)

    def flush(self, i: int | None = None) -> None:
        for k in range(len(self.models)) if i is None else [i]:
            items = self.pending[k]
            if not items:
                continue
            _, model = self.models[k]
            views = {r: np.stack([c[r] for _, _, c in items]) for r in model.recipes}
            variants = [(False, views)]
            if _wants_flip(model.contract, self.options):
                variants.append((True, {r: np.ascontiguousarray(v[:, :, ::-1]) for r, v in views.items()}))
            for flipped, batch in variants:
                emb = model.embed_views(batch, batch_size=self.options.batch_size)
                rows: dict[str, list[tuple[str, np.ndarray]]] = {}
                for (sha, prov, _), e in zip(items, emb):
                    rows.setdefault(_emb_key(model.contract, self.det_key, prov, flipped, model.precision),
                                    []).append((sha, e))
                for key, vals in rows.items():
                    self.cache.put_embeddings(key, vals)
            self.count[k] += len(items)
            self.pending[k] = []


@dataclass
class EmbeddedImages:
    """Every image embedded by every model, with what the detector made of the images."""

    embeddings: list[dict[Path, np.ndarray]]  # per model (in the order given), one vector per image
    sha: dict[Path, str]  # content sha256 per image
    no_face: list[Path]  # images without a detection for the first model (embedded from the fallback box)
    fallback_box: tuple[float, float, float, float]  # the first model's
    detected_now: int  # images run through a detector in this call (the rest came from the cache)
    embedded_now: list[int]  # per model, embeddings computed in this call
    seconds: dict[str, float]
    detectors: list[str] = field(default_factory=list)  # per model, the detector its faces came from
    no_face_per_model: list[list[Path]] = field(default_factory=list)


def embed_images(images: list[Path], models: list[tuple[str, FaceEmbedder]], options: EvalOptions,
                 cache: EvalCache, *, progress: ProgressFactory = no_progress) -> EmbeddedImages:
    """Embed ``images`` with every model through the detection and embedding cache.

    Models that find faces the same way (detector, face policy, landmark source) share one detection
    pass; each model gets its own detector unless ``options.detector`` names one for all.
    Raises FacefitError naming the files when images cannot be read or decoded.
    """
    if not models:
        raise ValueError("no model to embed with")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sha = hash_files(images, progress)
    seconds["hash"] = time.perf_counter() - t0
    # Work items: each model, except that an ensemble is embedded through its members, cached under their own
    # contracts (so evaluating an ensemble after its members re-uses what they embedded the same way).
    units: list[tuple[str, FaceEmbedder, AlignConfig]] = []
    parts: list[list[int]] = []
    for label, m in models:
        config = options.align_config(m)
        members = _members(m) if not options.flip else None
        parts.append([])
        for j, unit in enumerate(members or [m]):
            parts[-1].append(len(units))
            units.append((f"{label}#{j}" if members else label, unit, config))
    groups: dict[str, list[int]] = {}
    for u, (_, _, config) in enumerate(units):
        groups.setdefault(det_key(config), []).append(u)
    got_emb: list[dict[Path, np.ndarray]] = [{} for _ in units]
    got_now = [0] * len(units)
    no_face_u: list[list[Path]] = [[] for _ in units]
    fallback_u: dict[int, tuple[float, float, float, float]] = {}
    detected_now = 0
    for key, us in groups.items():
        first = units[us[0]][2]
        # One detection pass and one chip cut per face for the whole group, with every recipe any unit needs.
        config = replace(first, extra_recipes=tuple(r for u in us for r in units[u][1].recipes))
        got = _embed_group(images, sha, [(units[u][0], units[u][1]) for u in us], options, key, config, cache,
                           progress, seconds)
        detected_now += got.detected_now
        for j, u in enumerate(us):
            got_emb[u], got_now[u], no_face_u[u] = got.embeddings[j], got.embedded_now[j], got.no_face
            fallback_u[u] = got.fallback_box
    embeddings = [_combine(m, [got_emb[u] for u in us]) if len(us) > 1 else got_emb[us[0]]
                  for (_, m), us in zip(models, parts)]
    embedded_now = [max(got_now[u] for u in us) for us in parts]
    no_face = [no_face_u[us[0]] for us in parts]
    return EmbeddedImages(embeddings, sha, no_face[0], fallback_u[parts[0][0]], detected_now, embedded_now, seconds,
                          [options.detector_for(m) for _, m in models], no_face)


def _members(model: FaceEmbedder) -> list[FaceEmbedder] | None:
    """An ensemble's members (each embeds its own chips), or None for a single model."""
    members = getattr(model, "members", None)
    return list(members) if members else None


def _combine(ensemble: FaceEmbedder, parts: list[dict[Path, np.ndarray]]) -> dict[Path, np.ndarray]:
    """The ensemble's embedding of each image from its members' (``facefit.models.ensemble.combine``)."""
    from facefit.models.ensemble import combine

    images = list(parts[0])
    rows = combine([np.stack([part[p] for p in images]) for part in parts], ensemble.weights)  # type: ignore[attr-defined]
    return dict(zip(images, rows))


def _embed_group(images: list[Path], sha: dict[Path, str], models: list[tuple[str, FaceEmbedder]],
                 options: EvalOptions, det_key: str, config: AlignConfig, cache: EvalCache,
                 progress: ProgressFactory, seconds: dict[str, float]) -> EmbeddedImages:
    """``embed_images`` for models that share one detection setup (``det_key``, found as ``config`` says)."""
    dets = cache.get_detections(list(sha.values()), det_key)

    def missing_for(provenance_of: Callable[[str], str | None]) -> list[list[Path]]:
        """Per model, the images whose embedding under the given provenance is not cached."""
        out = []
        for _, m in models:
            need = []
            by_key: dict[str, list[Path]] = {}
            for p in images:
                prov = provenance_of(sha[p])
                if prov is not None:
                    by_key.setdefault(prov, []).append(p)
            precision = m.known_precision()
            if precision is None:  # auto, never measured here: it is measured on the first chips embedded
                need += [p for paths in by_key.values() for p in paths]
                out.append(need)
                continue
            for prov, paths in by_key.items():
                keys = [_emb_key(m.contract, det_key, prov, False, precision)] + \
                    ([_emb_key(m.contract, det_key, prov, True, precision)] if _wants_flip(m.contract, options)
                     else [])
                have = [cache.get_embeddings([sha[p] for p in paths], k) for k in keys]
                need += [p for p in paths if not all(sha[p] in h for h in have)]
            out.append(need)
        return out

    def recipes(ks: list[int]) -> tuple[AlignRecipe, ...]:
        return tuple(dict.fromkeys(r for k in ks for r in models[k][1].recipes))

    def views(k: int, chips: dict[AlignRecipe, np.ndarray]) -> Views:
        return {r: chips[r] for r in models[k][1].recipes}

    # Stage A: detect where needed; cut chips for detected faces lacking embeddings.
    t0 = time.perf_counter()
    need_a = missing_for(lambda s: "det" if s in dets and dets[s].status == "face" else None)
    tasks: list[CutTask] = []
    task_models: list[list[int]] = []
    want: dict[Path, list[int]] = {}
    for k, paths in enumerate(need_a):
        for p in paths:
            want.setdefault(p, []).append(k)
    undetected = [p for p in dict.fromkeys(images) if sha[p] not in dets]
    for p in undetected:
        ks = list(range(len(models)))
        tasks.append(CutTask(p, True, recipes=recipes(ks)))
        task_models.append(ks)
    for p, ks in want.items():
        d = dets[sha[p]]
        tasks.append(CutTask(p, False, d.box, d.landmarks, recipes(ks), source=d.detector))
        task_models.append(ks)
    embedder = _Embedder(models, cache, options, det_key)
    errors: list[str] = []
    new_dets: list[tuple[str, CachedDetection]] = []
    label = f"aligning + embedding ({config.detector})"
    with progress(label, len(tasks)) as bar, _share_cores(options.workers, len(undetected)):
        for task, ks, res in zip(tasks, task_models, run_cut_tasks(tasks, config, workers=options.workers)):
            s = sha[task.path]
            if res.error is not None:
                errors.append(str(res.error))
            elif task.detect:
                d = CachedDetection(res.status, res.box, res.landmarks, res.score, res.detector, res.n_faces, res.size)
                dets[s] = d
                new_dets.append((s, d))
                if len(new_dets) >= 256:
                    cache.put_detections(det_key, new_dets)
                    new_dets = []
            if res.status == "face" and res.chips:
                for k in ks:
                    embedder.add(k, s, "det", views(k, res.chips))
            bar.advance()
    cache.put_detections(det_key, new_dets)
    embedder.flush()
    if errors:
        raise FacefitError(f"{len(errors)} image(s) could not be decoded: {'; '.join(errors[:5])}")
    seconds["align_embed"] = seconds.get("align_embed", 0.0) + time.perf_counter() - t0

    # Stage B: images without a detection get a chip from the fallback box.
    t0 = time.perf_counter()
    fallback = fallback_relative([dets[sha[p]] for p in images])
    no_face = [p for p in images if dets[sha[p]].status != "face"]

    def fb_prov(s: str) -> str | None:
        d = dets[s]
        return None if d.status == "face" else "fb{},{},{},{}".format(*absolute_box(fallback, d.size))

    need_b = missing_for(fb_prov)
    want = {}
    for k, paths in enumerate(need_b):
        for p in paths:
            want.setdefault(p, []).append(k)
    tasks = [CutTask(p, False, absolute_box(fallback, dets[sha[p]].size), None, recipes(ks)) for p, ks in want.items()]
    for task, res in zip(tasks, run_cut_tasks(tasks, config, workers=options.workers)):
        if res.error is not None or not res.chips:
            raise FacefitError(f"{task.path}: fallback alignment failed: {res.error or 'no chip'}")
        for k in want[task.path]:
            embedder.add(k, sha[task.path], fb_prov(sha[task.path]) or "", views(k, res.chips))
    embedder.flush()
    seconds["fallback"] = seconds.get("fallback", 0.0) + time.perf_counter() - t0

    embeddings = [_gather(images, sha, dets, model.contract, model.precision, options, det_key, cache, fb_prov)
                  for _, model in models]
    return EmbeddedImages(embeddings, sha, no_face, fallback, len(undetected), list(embedder.count), seconds)


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
        dist = _pair_distances(pairs, emb, folds, options, metric)
        total = verification_metrics(-dist, same, folds)
        subs = subgroup_metrics(-dist, same, folds, groups) if groups else {}
        results.append(ModelEval(label, model.contract, dist, metric, to_distance_units(total),
                                 {g: to_distance_units(m) for g, m in subs.items()}, embedded.embedded_now[k],
                                 embedded.detectors[k], embedded.no_face_per_model[k], model.precision))
    seconds["metrics"] = time.perf_counter() - t0
    return EvalRun(pairs, options, results, embedded.no_face, embedded.fallback_box, data_sha,
                   embedded.detected_now, seconds)


class _share_cores:
    """While detection workers run, embed on the cores they leave: oversubscribed OpenMP threads spin."""

    def __init__(self, workers: int | None, n_detect: int) -> None:
        import os

        from facefit.align.batch import default_workers

        w = default_workers() if workers is None else workers
        # Only detection keeps the workers busy; cutting chips from cached landmarks is light.
        self.threads = max(1, (os.cpu_count() or 1) - w) if w > 1 and n_detect >= 16 else None

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(min(self.threads, self.before))

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.before)


def _gather(images: list[Path], sha: dict[Path, str], dets: dict[str, CachedDetection], contract: EmbeddingContract,
            precision: str, options: EvalOptions, det_key: str, cache: EvalCache,
            fb_prov: Callable[[str], str | None]) -> dict[Path, np.ndarray]:
    by_key: dict[str, list[Path]] = {}
    for p in images:
        prov = "det" if dets[sha[p]].status == "face" else fb_prov(sha[p])
        by_key.setdefault(prov or "", []).append(p)
    out: dict[Path, np.ndarray] = {}
    for prov, paths in by_key.items():
        shas = [sha[p] for p in paths]
        orig = cache.get_embeddings(shas, _emb_key(contract, det_key, prov, False, precision))
        mirror = _wants_flip(contract, options)
        flip = cache.get_embeddings(shas, _emb_key(contract, det_key, prov, True, precision)) if mirror else {}
        for p in paths:
            if sha[p] not in orig or (mirror and sha[p] not in flip):
                raise RuntimeError(f"{p}: embedding missing from the cache after embedding")  # a bug, not input
            out[p] = (orig[sha[p]] + flip[sha[p]]) / 2 if mirror else orig[sha[p]]
    return out


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
