"""Open-set 1:N identification on an identity-folder data set: protocol, embedding, metrics.

The protocol, deterministic under its seed: a number (or fraction) of all persons is held out as strangers,
whose images are all non-mated probes; the gallery is every other person with at least ``enrol + min_probes``
images (optionally capped); each gallery person enrols ``enrol`` images and the rest are mated probes. Persons with
too few images are neither enrolled nor strangers. Which images a person enrols depends only on the seed and
the person's name, so capping the number of persons does not reshuffle anybody's images.

Embeddings come from the same detection/embedding cache as ``facefit eval``, with the same fallback box for
images without a detected face.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facefit.align.cached import content_digest
from facefit.data.folders import IdentityFolders, Person
from facefit.engine.cached import embed_images
from facefit.errors import FacefitError, UsageError
from facefit.eval.identification import FPIR_TARGETS, fpir_key
from facefit.eval.run import EvalOptions, model_metric
from facefit.io.cache import EvalCache
from facefit.io.progress import ProgressFactory, no_progress
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract

MAX_GROUP_VALUES = 20  # attributes with more distinct values (ages, family ids) make no readable subgroups


@dataclass(frozen=True)
class ProtocolOptions:
    enrol: int = 1  # images enrolled per gallery person
    strangers: float = 0.2  # < 1: a fraction of all persons; >= 1: a number of persons
    persons: int | None = None  # cap on gallery persons
    probes_per_person: int | None = None  # cap on probes of every person, strangers included
    min_probes: int = 1  # a gallery person needs enrol + min_probes images
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"enrol": self.enrol, "strangers": self.strangers, "persons": self.persons,
                "probes_per_person": self.probes_per_person, "min_probes": self.min_probes, "seed": self.seed}


@dataclass
class Protocol:
    options: ProtocolOptions
    gallery: list[str]  # person names; the index is the gallery-person index
    strangers: list[str]
    enrolled: list[Path]
    enrolled_person: list[int]
    probes: list[Path]
    probe_labels: list[int]  # gallery-person index, or -1 for a stranger
    notes: list[str] = field(default_factory=list)

    def images(self) -> list[Path]:
        return self.enrolled + self.probes

    def counts(self) -> dict[str, int]:
        mated = sum(lab >= 0 for lab in self.probe_labels)
        return {"gallery_persons": len(self.gallery), "stranger_persons": len(self.strangers),
                "enrolled_images": len(self.enrolled), "probes": len(self.probes), "mated_probes": mated,
                "nonmated_probes": len(self.probes) - mated}


def stranger_count(strangers: float, n_persons: int) -> int:
    """Persons held out: a fraction (< 1) of ``n_persons``, rounded, or a whole number of persons."""
    if strangers < 0 or not math.isfinite(strangers):
        raise UsageError(f"--strangers must be a number of persons or a fraction in [0, 1), got {strangers:g}")
    if strangers < 1:
        return int(round(strangers * n_persons))
    if strangers != int(strangers):
        raise UsageError(f"--strangers {strangers:g}: a number of persons must be whole (or use a fraction < 1)")
    return int(strangers)


def _shuffled(person: Person, seed: int) -> list[Path]:
    # Seeded by the person's name, so a person's enrolment does not depend on who else is in the protocol.
    key = int.from_bytes(hashlib.sha256(person.name.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, key])
    return [person.images[i] for i in rng.permutation(len(person.images))]


def make_protocol(data: IdentityFolders, options: ProtocolOptions) -> Protocol:
    """Split the persons into gallery and strangers and their images into enrolled and probes."""
    g = options.enrol
    if g < 1:
        raise UsageError(f"--enrol must be at least 1, got {g}")
    if options.persons is not None and options.persons < 2:
        raise UsageError(f"--persons must be at least 2, got {options.persons}")
    if options.probes_per_person is not None and options.probes_per_person < 1:
        raise UsageError(f"--probes-per-person must be at least 1, got {options.probes_per_person}")
    if options.min_probes < 1:
        raise UsageError(f"--min-probes must be at least 1, got {options.min_probes}")
    if options.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {options.seed}")
    persons = data.persons
    need = g + options.min_probes
    n_strangers = stranger_count(options.strangers, len(persons))
    most = max(len(p.images) for p in persons)
    if most < need:
        raise FacefitError(f"--enrol {g}: no person under {data.root} has more than {most} image(s); a gallery "
                           f"person needs {g} to enrol and at least {options.min_probes} more to probe")
    if n_strangers > len(persons) - 2:
        raise FacefitError(f"--strangers {options.strangers:g}: {data.root} has {len(persons)} persons, so at most "
                           f"{max(len(persons) - 2, 0)} can be strangers (2 or more must stay in the gallery)")
    order = np.random.default_rng(options.seed).permutation(len(persons))
    stranger_idx = sorted(order[:n_strangers].tolist())
    eligible = [int(i) for i in order[n_strangers:] if len(persons[i].images) >= need]
    if len(eligible) < 2:
        raise FacefitError(f"only {len(eligible)} person(s) under {data.root} with at least {need} images remain "
                           f"after holding out {n_strangers} stranger(s); 1:N identification needs at least 2 "
                           f"gallery persons (lower --enrol, --min-probes or --strangers)")
    chosen = sorted(eligible[: options.persons] if options.persons is not None else eligible)
    cap = options.probes_per_person
    proto = Protocol(options, [persons[i].name for i in chosen], [persons[i].name for i in stranger_idx],
                     [], [], [], [])
    for k, i in enumerate(chosen):
        images = _shuffled(persons[i], options.seed)
        probes = images[g:][:cap]
        proto.enrolled += images[:g]
        proto.enrolled_person += [k] * g
        proto.probes += probes
        proto.probe_labels += [k] * len(probes)
    for i in stranger_idx:
        probes = _shuffled(persons[i], options.seed)[:cap]
        proto.probes += probes
        proto.probe_labels += [-1] * len(probes)
    too_few = len(persons) - n_strangers - len(eligible)
    if too_few:
        proto.notes.append(f"{too_few} person(s) with fewer than {need} images are neither enrolled nor strangers")
    if len(chosen) < len(eligible):
        proto.notes.append(f"--persons {options.persons}: {len(eligible) - len(chosen)} eligible person(s) unused")
    return proto


@dataclass
class OpenSetModel:
    label: str
    contract: EmbeddingContract
    metric: str
    threshold: float | None  # the fixed operating threshold
    threshold_source: str
    dist: np.ndarray  # probes x gallery persons
    total: dict[str, Any]
    subgroups: dict[str, dict[str, Any]]
    embedded_now: int


@dataclass
class OpenSetRun:
    data: IdentityFolders
    protocol: Protocol
    options: EvalOptions
    aggregate: str
    models: list[OpenSetModel]
    no_face: list[Path]
    fallback_box: tuple[float, float, float, float]
    data_sha256: str
    detected_now: int
    seconds: dict[str, float]
    group_notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.protocol.probe_labels, dtype=np.int64)


def probe_groups(data: IdentityFolders, probes: list[Path]) -> tuple[dict[str, list[str | None]], list[str]]:
    """Per attribute (file name or metadata), one value per probe; attributes with too many values are left
    out, with a note."""
    attrs = [data.attributes(p) for p in probes]
    groups: dict[str, list[str | None]] = {}
    notes = []
    for name in sorted(set().union(*attrs)) if attrs else []:
        labels = [a.get(name) for a in attrs]
        n_values = len({v for v in labels if v is not None})
        if n_values > MAX_GROUP_VALUES:
            notes.append(f"attribute {name!r} has {n_values} distinct values (more than {MAX_GROUP_VALUES}): "
                         f"not reported as subgroups")
            continue
        groups[name] = labels
    return groups, notes


def _fixed_threshold(contract: EmbeddingContract, metric: str, given: float | None) -> tuple[float | None, str]:
    from facefit.models.thresholds import choose_threshold

    chosen = choose_threshold(contract, "identify", metric=metric, given=given, given_source="the given threshold")
    return chosen.value, chosen.source


def evaluate_open_set(data: IdentityFolders, protocol: Protocol, models: list[tuple[str, FaceEmbedder]],
                      options: EvalOptions, cache: EvalCache, *, aggregate: str = "best",
                      threshold: float | None = None, progress: ProgressFactory = no_progress) -> OpenSetRun:
    """Embed the protocol's images with every model (cached) and compute the open-set metrics."""
    from facefit.eval.identification import gallery_distances, identification_metrics, metrics_at_thresholds

    if options.metric not in ("euclidean", "cosine", "auto"):
        raise ValueError(f"unknown metric {options.metric!r}")
    images = list(dict.fromkeys(protocol.images()))
    embedded = embed_images(images, models, options, cache, progress=progress)
    seconds = dict(embedded.seconds)
    t0 = time.perf_counter()
    labels = np.asarray(protocol.probe_labels, dtype=np.int64)
    groups, group_notes = probe_groups(data, protocol.probes)
    results = []
    for k, (label, model) in enumerate(models):
        emb = embedded.embeddings[k]
        metric = model_metric(model.contract, options.metric)
        dist = gallery_distances(np.stack([emb[p] for p in protocol.probes]),
                                 np.stack([emb[p] for p in protocol.enrolled]), protocol.enrolled_person,
                                 len(protocol.gallery), metric, aggregate)
        fixed, source = _fixed_threshold(model.contract, metric, threshold)
        total = identification_metrics(dist, labels, threshold=fixed)
        points = {f"at_{fpir_key(t)}": total[f"threshold_at_{fpir_key(t)}"] for t in FPIR_TARGETS}
        if fixed is not None:
            points["at_threshold"] = fixed
        subgroups = {}
        for name, values in groups.items():
            for value in sorted({v for v in values if v is not None}):
                mask = np.array([v == value for v in values])
                subgroups[f"{name}={value}"] = metrics_at_thresholds(dist[mask], labels[mask], points)
        results.append(OpenSetModel(label, model.contract, metric, fixed, source, dist, total, subgroups,
                                    embedded.embedded_now[k]))
    seconds["metrics"] = time.perf_counter() - t0
    return OpenSetRun(data, protocol, options, aggregate, results, embedded.no_face, embedded.fallback_box,
                      content_digest(embedded.sha, data.root), embedded.detected_now, seconds, group_notes)
