"""Many images, one face each, through the detection and embedding cache: what evaluation embeds.

Detection is cached by image content and detector settings (``align.cached.CachedCuts``),
embeddings by image content, model contract, detection setup, chip provenance and precision,
so evaluating another model on the same data only re-embeds and a re-run is nearly free.
Images without a detection keep their place with a chip from the fallback box.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, FacePolicy
from facefit.align.cached import CachedCuts, det_key, hash_files
from facefit.engine.batcher import ViewBatcher
from facefit.engine.engine import settle_precision
from facefit.errors import FacefitError
from facefit.io.cache import EvalCache
from facefit.io.progress import ProgressFactory, no_progress
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract

SHARE_MIN = 16  # images to detect before detection workers get cores of their own


@dataclass(frozen=True)
class EmbedOptions:
    """How faces are found and embedded for a set of images."""

    detector: str | None = None  # None: each model's own (its recipe's detector: hog for dlib, yunet for sface)
    faces: str = "center"  # which face of a multi-face image is the subject
    flip: bool = False  # average each embedding with its mirror image's
    workers: int | None = None
    batch_size: int = 64

    def align_config(self, model: FaceEmbedder) -> AlignConfig:
        """How ``model``'s faces are found: the detector asked for, else the model's own, and its recipes."""
        return AlignConfig.for_model(model, detector=self.detector, faces=FacePolicy(self.faces))

    def detector_for(self, model: FaceEmbedder) -> str:
        return self.align_config(model).detector


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


def wants_flip(contract: EmbeddingContract, options: EmbedOptions) -> bool:
    """Whether to embed mirror images too: a flip-average model's own embedding already includes them."""
    return options.flip and not contract.flip_average


def emb_key(contract: EmbeddingContract, det_key: str, provenance: str, flipped: bool, precision: str) -> str:
    """The cache key of one model's embeddings of chips cut one way."""
    # fp32 keys are those of caches written before precisions existed; others name theirs.
    tail = "" if precision == "fp32" else f"|{precision}"
    return f"{contract.id}|{det_key}|{provenance}|{'flip' if flipped else 'orig'}{tail}"


def embed_images(images: list[Path], models: list[tuple[str, FaceEmbedder]], options: EmbedOptions,
                 cache: EvalCache, *, progress: ProgressFactory = no_progress) -> EmbeddedImages:
    """Embed ``images`` with every model through the detection and embedding cache.

    Models that find faces the same way (detector, face policy, landmark source) share one detection
    pass; an ensemble is embedded through its members, cached under their own contracts (so an
    ensemble evaluated after its members re-uses what they embedded). Raises FacefitError naming
    the files when images cannot be read or decoded.
    """
    if not models:
        raise ValueError("no model to embed with")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sha = hash_files(images, progress)
    seconds["hash"] = time.perf_counter() - t0
    units: list[tuple[FaceEmbedder, AlignConfig]] = []  # what is embedded: models, or an ensemble's members
    parts: list[list[int]] = []
    for _, m in models:
        config = options.align_config(m)
        members = _members(m) if not options.flip else None
        parts.append([])
        for unit in members or [m]:
            parts[-1].append(len(units))
            units.append((unit, config))
    groups: dict[str, list[int]] = {}
    for u, (_, config) in enumerate(units):
        groups.setdefault(det_key(config), []).append(u)
    got: list[_Unit] = [None] * len(units)  # type: ignore[list-item]
    detected_now = 0
    t0 = time.perf_counter()
    for key, us in groups.items():
        # One detection pass and one chip cut per face for the whole group, with every recipe any unit needs.
        config = replace(units[us[0]][1], extra_recipes=tuple(r for u in us for r in units[u][0].recipes))
        group = _embed_group(images, sha, [units[u][0] for u in us], options, key, config, cache, progress)
        detected_now += group[0].detected_now
        for u, g in zip(us, group):
            got[u] = g
    seconds["align_embed"] = time.perf_counter() - t0
    embeddings = [_combine(m, [got[u].embeddings for u in us]) if len(us) > 1 else got[us[0]].embeddings
                  for (_, m), us in zip(models, parts)]
    first = got[parts[0][0]]
    return EmbeddedImages(embeddings, sha, first.no_face, first.fallback, detected_now,
                          [max(got[u].embedded_now for u in us) for us in parts], seconds,
                          [options.detector_for(m) for _, m in models], [got[us[0]].no_face for us in parts])


@dataclass
class _Unit:
    embeddings: dict[Path, np.ndarray]
    embedded_now: int
    no_face: list[Path]
    fallback: tuple[float, float, float, float]
    detected_now: int


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


class _Cached:
    """One model's cached embeddings for a set of images: what is missing, storing, reading back."""

    def __init__(self, model: FaceEmbedder, options: EmbedOptions, det_key: str, cache: EvalCache) -> None:
        self.model, self.det_key, self.cache = model, det_key, cache
        self.flip = wants_flip(model.contract, options)
        self.batcher: ViewBatcher[tuple[str, str]] = ViewBatcher(model, self.store, batch_size=options.batch_size,
                                                                 flip=self.flip)
        self.have: dict[str, set[str]] = {}  # provenance -> shas whose embeddings are cached

    def key(self, provenance: str, flipped: bool) -> str:
        return emb_key(self.model.contract, self.det_key, provenance, flipped, self.model.precision)

    def needs(self, sha: str, provenance: str) -> bool:
        """Whether this image's chips cut this way must be embedded (an image never checked always is)."""
        return sha not in self.have.get(provenance, ())

    def check(self, shas: list[str], provenance_of: dict[str, str]) -> None:
        """Note which of ``shas`` have their embeddings cached (one query per key)."""
        if self.model.known_precision() is None:  # auto, never measured here: measured on the first chips
            return
        by_prov: dict[str, list[str]] = {}
        for s in shas:
            by_prov.setdefault(provenance_of[s], []).append(s)
        for prov, group in by_prov.items():
            found = [self.cache.get_embeddings(group, self.key(prov, f)) for f in ([False, True] if self.flip
                                                                                  else [False])]
            self.have.setdefault(prov, set()).update(s for s in group if all(s in h for h in found))

    def store(self, keys: list[tuple[str, str]], emb: np.ndarray, flipped: bool) -> None:
        rows: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (sha, prov), e in zip(keys, emb):
            rows.setdefault(self.key(prov, flipped), []).append((sha, e))
        for key, vals in rows.items():
            self.cache.put_embeddings(key, vals)

    def gather(self, images: list[Path], sha: dict[Path, str], provenance_of: dict[str, str]) -> dict[Path, np.ndarray]:
        by_prov: dict[str, list[Path]] = {}
        for p in images:
            by_prov.setdefault(provenance_of[sha[p]], []).append(p)
        out: dict[Path, np.ndarray] = {}
        for prov, paths in by_prov.items():
            shas = [sha[p] for p in paths]
            orig = self.cache.get_embeddings(shas, self.key(prov, False))
            mirror = self.cache.get_embeddings(shas, self.key(prov, True)) if self.flip else {}
            for p in paths:
                if sha[p] not in orig or (self.flip and sha[p] not in mirror):
                    raise RuntimeError(f"{p}: embedding missing from the cache after embedding")  # a bug, not input
                out[p] = (orig[sha[p]] + mirror[sha[p]]) / 2 if self.flip else orig[sha[p]]
        return out


def _embed_group(images: list[Path], sha: dict[Path, str], models: list[FaceEmbedder], options: EmbedOptions,
                 det_key: str, config: AlignConfig, cache: EvalCache, progress: ProgressFactory) -> list[_Unit]:
    """``embed_images`` for models that share one detection setup (``det_key``, found as ``config`` says)."""
    caches = [_Cached(m, options, det_key, cache) for m in models]
    fallback_checked = False

    def wanted(s: str, provenance: str) -> tuple:
        nonlocal fallback_checked
        if provenance != "det" and not fallback_checked:  # stage B: the fallback box is known now
            no_face = [sha[p] for p in cuts.no_face]
            for c in caches:
                c.batcher.flush()  # settles ``auto`` precision first, which names the cache keys checked
                c.check(no_face, {x: cuts.provenance(x) for x in no_face})
            fallback_checked = True
        return tuple(dict.fromkeys(r for c in caches if c.needs(s, provenance) for r in c.model.recipes))

    cuts = CachedCuts(images, sha, config, cache, wanted=wanted, workers=options.workers, progress=progress)
    settle_precision(models, images, config)  # before alignment workers (and a cut torch) share the cores
    detected = [s for s in dict.fromkeys(sha[p] for p in images) if s in cuts.dets and cuts.dets[s].status == "face"]
    for c in caches:
        c.check(detected, dict.fromkeys(detected, "det"))
    unreadable: FacefitError | None = None
    try:
        with _share_cores(options.workers, cuts.detected_now):
            for got in cuts:
                for c in caches:
                    if c.needs(got.sha, got.provenance):
                        c.batcher.add((got.sha, got.provenance), got.views)
    except FacefitError as exc:  # unreadable images: what the others gave is embedded and cached, then reported
        unreadable = exc
    for c in caches:
        c.batcher.flush()
    if unreadable is not None:
        raise unreadable
    provenance_of = {sha[p]: cuts.provenance(sha[p]) for p in images}
    return [_Unit(c.gather(images, sha, provenance_of), c.batcher.count, cuts.no_face, cuts.fallback,
                  cuts.detected_now) for c in caches]


class _share_cores:
    """While detection workers run, embed on the cores they leave: oversubscribed OpenMP threads spin."""

    def __init__(self, workers: int | None, n_detect: int) -> None:
        import os

        from facefit.align.batch import default_workers

        w = default_workers() if workers is None else workers
        # Only detection keeps the workers busy; cutting chips from cached landmarks is light.
        self.threads = max(1, (os.cpu_count() or 1) - w) if w > 1 and n_detect >= SHARE_MIN else None

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(min(self.threads, self.before))

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.before)
