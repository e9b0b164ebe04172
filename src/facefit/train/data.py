"""Training data: identity folders -> filtered, aligned chips with person labels.

Chips are cut through the shared detection cache, so a second run (or a resumed
one) does not detect again. Several roots are merged with persons kept apart
per root. Persons are split into train and validation, never images.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, FacePolicy
from facefit.align.cached import cached_chips, content_digest, hash_files
from facefit.align.recipe import AlignRecipe
from facefit.data.folders import IdentityFolders
from facefit.errors import FacefitError, UsageError
from facefit.io.cache import EvalCache
from facefit.io.progress import ProgressFactory, no_progress
from facefit.train.config import DataConfig


@dataclass
class ChipData:
    """Aligned chips and integer person labels (0..n_persons-1)."""

    chips: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64
    persons: list[str]
    paths: list[Path]
    no_face: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_persons(self) -> int:
        return len(self.persons)


@dataclass
class PreparedData:
    train: ChipData
    val: ChipData | None
    digest: str  # content digest of every image used
    notes: list[str] = field(default_factory=list)


def _select(cfg: DataConfig) -> tuple[list[tuple[str, list[Path]]], list[str]]:
    """Persons (qualified by root when several) with their images, after filters and minimum counts."""
    if not cfg.train:
        raise FacefitError("no training data: give at least one identity folder (data.train)")
    if cfg.metadata and len(cfg.metadata) != len(cfg.train):
        raise FacefitError(f"data.metadata has {len(cfg.metadata)} file(s) for {len(cfg.train)} root(s); "
                           f"give one per root")
    notes: list[str] = []
    persons: list[tuple[str, list[Path]]] = []
    seen_attrs: set[str] = set()
    for i, root in enumerate(cfg.train):
        ds = IdentityFolders.scan(root, metadata=cfg.metadata[i] if cfg.metadata else None)
        if ds.skipped:
            notes.append(f"{root}: {len(ds.skipped)} non-image file(s) ignored, e.g. {ds.skipped[0]}")
        if note := ds.bad_name_note():
            notes.append(note)
        if note := ds.link_note():
            notes.append(note)
        if ds.unmatched_metadata:
            notes.append(f"{root}: {ds.unmatched_metadata} metadata row(s) match no image")
        for person in ds.persons:
            keep = []
            for img in person.images:
                attrs = ds.attributes(img)
                seen_attrs.update(attrs)
                if all(attrs.get(k) in set(v) for k, v in cfg.filters.items()):
                    keep.append(img)
            name = person.name if len(cfg.train) == 1 else f"{root.name}/{person.name}"
            persons.append((name, keep))
    unknown = set(cfg.filters) - seen_attrs
    if unknown:
        raise FacefitError(f"filter on unknown attribute(s) {', '.join(sorted(unknown))}; the data has: "
                           f"{', '.join(sorted(seen_attrs)) or 'none'}")
    too_few = [n for n, imgs in persons if 0 < len(imgs) < cfg.min_images_per_person]
    kept = [(n, imgs) for n, imgs in persons if len(imgs) >= cfg.min_images_per_person]
    if too_few:
        notes.append(f"{len(too_few)} person(s) with fewer than {cfg.min_images_per_person} images left out "
                     f"(a margin or triplet loss cannot use them), e.g. {too_few[0]}")
    if len(kept) < 2:
        raise FacefitError(f"training needs at least 2 persons with {cfg.min_images_per_person}+ images each; "
                           f"found {len(kept)}")
    return kept, notes


def _shared_photos_note(persons: list[tuple[str, list[Path]]], shas: dict[Path, str]) -> str | None:
    """A warning when one photo (by content) is filed under two persons: the loss then pushes it from itself."""
    owners: dict[str, set[str]] = {}
    for name, imgs in persons:
        for p in imgs:
            owners.setdefault(shas[p], set()).add(name)
    shared = [sorted(names) for names in owners.values() if len(names) > 1]
    if not shared:
        return None
    return (f"warning: {len(shared)} photo(s) are filed under more than one person (e.g. under "
            f"{' and '.join(shared[0][:2])}); check the labels: such a photo is taught as two identities")


def _chip_data(persons: list[tuple[str, list[Path]]], chips: np.ndarray, index: dict[Path, int],
               no_face: set[Path]) -> ChipData:
    paths = [p for _, imgs in persons for p in imgs]
    labels = np.array([k for k, (_, imgs) in enumerate(persons) for _ in imgs], dtype=np.int64)
    return ChipData(chips[[index[p] for p in paths]], labels, [n for n, _ in persons], paths,
                    [p for p in paths if p in no_face])


Persons = list[tuple[str, list[Path]]]


def split_persons(persons: Persons, held_out: float, seed: int) -> tuple[Persons, Persons]:
    """(training persons, held-out persons): a seeded draw of whole persons, in their original order."""
    if held_out <= 0:
        return persons, []
    order = list(range(len(persons)))
    random.Random(seed).shuffle(order)
    n_val = max(2, round(len(persons) * held_out))
    if len(persons) - n_val < 2:
        raise FacefitError(f"holding out {held_out:.0%} of {len(persons)} persons for validation leaves "
                           f"fewer than 2 to train on; set data.val_fraction lower or give data.val_pairs")
    val_ids = set(order[:n_val])
    return ([p for k, p in enumerate(persons) if k not in val_ids],
            [p for k, p in enumerate(persons) if k in val_ids])


def held_out_persons(cfg: DataConfig, seed: int) -> Persons:
    """The persons a run with this data config and seed held out of training (for later calibration)."""
    persons, _ = _select(cfg)
    return split_persons(persons, cfg.held_out, seed)[1]


def prepare_data(cfg: DataConfig, recipe: AlignRecipe, cache: EvalCache, *, seed: int = 0,
                 workers: int | None = None, progress: ProgressFactory = no_progress) -> PreparedData:
    """Scan, filter, align (cached) and split the training data."""
    persons, notes = _select(cfg)
    paths = [p for _, imgs in persons for p in imgs]
    if cfg.aligned:
        from facefit.io.images import load_image

        chips = np.empty((len(paths), recipe.size, recipe.size, 3), np.uint8)
        for i, p in enumerate(paths):
            img = load_image(p)
            if img.shape[:2] != (recipe.size, recipe.size):
                raise FacefitError(f"{p}: expected an aligned {recipe.size}x{recipe.size} chip, got "
                                   f"{img.shape[1]}x{img.shape[0]} (data.aligned is set)")
            chips[i] = img
        no_face: list[Path] = []
        shas = hash_files(paths, progress)
        digest = content_digest(shas)
    else:
        config = AlignConfig(detector=cfg.detector, faces=FacePolicy.largest, recipe=recipe)
        got = cached_chips(paths, config, cache, workers=workers, progress=progress)
        chips, no_face = got.chips, got.no_face
        shas = hash_files(paths)
        digest = content_digest(shas)
        if len(no_face) * 2 > len(paths):  # the median-box fallback is for a few misses, not for non-faces
            raise FacefitError(f"{len(no_face)} of {len(paths)} training images have no detected face (e.g. "
                               f"{no_face[0]}); are these face photos? Already aligned chips need "
                               f"--set data.aligned=true")
        if no_face:
            notes.append(f"{len(no_face)} of {len(paths)} training images had no detected face; their chip "
                         f"comes from the median face box")
    note = _shared_photos_note(persons, shas)
    if note:
        notes.append(note)
    index = {p: i for i, p in enumerate(paths)}
    missing = set(no_face)
    train_persons, val_persons = split_persons(persons, cfg.held_out, seed)
    train = _chip_data(train_persons, chips, index, missing)
    val = _chip_data(val_persons, chips, index, missing) if val_persons else None
    return PreparedData(train, val, digest, notes)


def prepare_anchors(roots: list[Path], recipe: AlignRecipe, cache: EvalCache, *, detector: str = "auto",
                    workers: int | None = None,
                    progress: ProgressFactory = no_progress) -> tuple[np.ndarray, list[str]]:
    """Aligned chips of every image under the anchor folders (recursively), and notes for the log."""
    from facefit.io.files import collect_images

    try:
        found = collect_images(roots)
    except UsageError as exc:
        raise FacefitError(f"guard.anchors: {exc}") from None
    if not found.files:
        raise FacefitError(f"guard.anchors: no images under {', '.join(str(r) for r in roots)}")
    config = AlignConfig(detector=detector, faces=FacePolicy.largest, recipe=recipe)
    got = cached_chips(found.files, config, cache, workers=workers, progress=progress)
    notes = [f"{len(found.files)} anchor faces from {', '.join(str(r) for r in roots)}"
             + (f" ({len(got.no_face)} without a detected face, cut from the median box)" if got.no_face else "")]
    if found.skipped:
        notes.append(f"guard.anchors: {len(found.skipped)} non-image file(s) ignored, e.g. {found.skipped[0]}")
    return got.chips, notes


def val_overlap_note(train: ChipData, val_images: list[Path], val_root: Path) -> str | None:
    """A warning when the validation pairs reuse training photos or training persons' folders, or None.

    Pairs over training identities select epochs and calibrate thresholds on faces the model has
    learnt, so the numbers come out optimistic.
    """
    trained = {p.resolve() for p in train.paths}
    shared = [p for p in val_images if p.resolve() in trained]
    persons = {n.rsplit("/", 1)[-1] for n in train.persons}
    named = set()
    for p in val_images:
        try:
            first = p.relative_to(val_root).parts[0]
        except (ValueError, IndexError):
            continue
        if first in persons:
            named.add(first)
    if not shared and not named:
        return None
    return (f"warning: the validation pairs overlap the training data ({len(shared)} of {len(val_images)} "
            f"images are training photos; {len(named)} person folder name(s) are training persons, e.g. "
            f"{sorted(named)[0] if named else shared[0].name}); epoch selection and the exported thresholds "
            f"will be optimistic: validate on persons the model does not train on")
