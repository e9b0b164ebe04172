"""Identity-disjoint verification pairs for a new identity-folder data set.

Each person goes to exactly one fold, so a threshold chosen on the other folds
is never tested on a face it has already seen. Within a fold, same-person
pairs and different-person pairs are sampled uniformly without replacement,
optionally spread evenly over the values of one attribute (``group_by``).

Sampling never builds all O(n^2) candidates of a large fold: it draws
candidates directly (uniformly over pairs) and rejects duplicates.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from facefit.data.attributes import image_attributes, pair_attributes
from facefit.data.folders import IdentityFolders, Person
from facefit.errors import FacefitError, UsageError

DEFAULT_PAIRS = 3000
ENUMERATE_LIMIT = 200_000  # candidates per fold and kind above which we sample instead of listing them
STRATIFY_ALL = 10_000  # a fold with at most this many candidates of a kind is stratified over all of them
OVERSAMPLE = 10  # else candidates drawn per requested pair, to bucket by value
CSV_COLUMNS = ("path_a", "path_b", "same", "fold")

Candidate = tuple[int, int]  # indices into a fold's images, first < second


@dataclass(frozen=True)
class GeneratedPair:
    a: Path
    b: Path
    same: bool
    fold: int
    attrs: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class PairPlan:
    pairs: list[GeneratedPair]
    notes: list[str] = field(default_factory=list)  # e.g. "fold 3: only 41 positive pairs possible, 60 requested"
    group_by: str | None = None
    folds: list[list[str]] = field(default_factory=list)  # person names of each fold

    @property
    def n_pos(self) -> int:
        return sum(p.same for p in self.pairs)

    @property
    def n_neg(self) -> int:
        return len(self.pairs) - self.n_pos


class _Fold:
    """One fold's images, laid out person by person so a candidate is a pair of indices."""

    def __init__(self, index: int, persons: list[Person]) -> None:
        self.index = index
        self.persons = persons
        self.images = [img for p in persons for img in p.images]
        self.starts = list(itertools.accumulate((len(p.images) for p in persons), initial=0))[:-1]
        sizes = [len(p.images) for p in persons]
        n = len(self.images)
        self.n_pos = sum(k * (k - 1) // 2 for k in sizes)
        self.n_neg = (n * n - sum(k * k for k in sizes)) // 2
        self._pos_weights = list(itertools.accumulate(k * (k - 1) // 2 for k in sizes))
        # Picking person p with weight k_p (n - k_p), one of its images, then any image outside p,
        # makes every ordered different-person pair equally likely.
        self._neg_weights = list(itertools.accumulate(k * (n - k) for k in sizes))

    def all_pos(self) -> Iterator[Candidate]:
        for start, person in zip(self.starts, self.persons):
            yield from itertools.combinations(range(start, start + len(person.images)), 2)

    def all_neg(self) -> Iterator[Candidate]:
        spans = [range(s, s + len(p.images)) for s, p in zip(self.starts, self.persons)]
        for first, second in itertools.combinations(spans, 2):
            yield from itertools.product(first, second)

    def draw_pos(self, rng: random.Random) -> Candidate:
        p = rng.choices(range(len(self.persons)), cum_weights=self._pos_weights)[0]
        i, j = rng.sample(range(len(self.persons[p].images)), 2)
        return self.starts[p] + min(i, j), self.starts[p] + max(i, j)

    def draw_neg(self, rng: random.Random) -> Candidate:
        p = rng.choices(range(len(self.persons)), cum_weights=self._neg_weights)[0]
        start, k = self.starts[p], len(self.persons[p].images)
        i = start + rng.randrange(k)
        j = rng.randrange(len(self.images) - k)
        if j >= start:  # skip over p's own images
            j += k
        return min(i, j), max(i, j)


class _PairAttributes:
    """Pair attributes computed from per-image attributes that are worked out once per image."""

    def __init__(self, data: IdentityFolders) -> None:
        self._data = data
        self._image: dict[Path, tuple[str, tuple, dict[str, str]]] = {}  # rel path, name signature, all attributes
        self._pair_only: dict[tuple, dict[str, str]] = {}

    def _load(self, img: Path) -> tuple[str, tuple, dict[str, str]]:
        got = self._image.get(img)
        if got is None:
            rel = self._data.relative(img)
            names = image_attributes(rel)
            got = (rel, tuple(sorted(names.items())), {**names, **self._data.metadata.get(rel, {})})
            self._image[img] = got
        return got

    def pair(self, a: Path, b: Path) -> dict[str, str]:
        """Shared value or ``mixed`` per attribute both images have, plus pair-only ones such as ``age_gap``."""
        rel_a, names_a, ta = self._load(a)
        rel_b, names_b, tb = self._load(b)
        # pair_attributes depends only on the file-name attributes, so equal name signatures share results.
        key = (names_a, names_b)
        if key not in self._pair_only:
            own = dict(names_a)
            self._pair_only[key] = {k: v for k, v in pair_attributes(rel_a, rel_b).items() if k not in own}
        shared = {k: ta[k] if ta[k] == tb[k] else "mixed" for k in ta.keys() & tb.keys()}
        return {**self._pair_only[key], **shared}

    def has(self, name: str, images: list[Path]) -> bool:
        """Whether some pair of these images can have attribute ``name`` (stops at the first that does)."""
        if any(name in row for row in self._data.metadata.values()):
            return True
        return any(name in self.pair(img, img) for img in images)

    def names(self, images: list[Path]) -> list[str]:
        """Every attribute name some pair of these images can have."""
        found: set[str] = set()
        for img in images:
            found.update(self.pair(img, img))
        return sorted(found)


def make_pairs(data: IdentityFolders, *, n_folds: int = 10, n_pos: int | None = None, n_neg: int | None = None,
               seed: int = 0, group_by: str | None = None) -> PairPlan:
    """Assign persons to folds and sample same- and different-person pairs within each fold."""
    _check_counts(n_folds, n_pos, n_neg)
    rng = random.Random(seed)
    folds = [_Fold(i, persons) for i, persons in enumerate(assign_folds(data.persons, n_folds, rng))]
    total_pos, total_neg = sum(f.n_pos for f in folds), sum(f.n_neg for f in folds)
    if total_pos == 0 and n_pos != 0:
        raise FacefitError(f"{data.root}: no person has two or more images, so no same-person pair is possible")
    default = min(DEFAULT_PAIRS, total_pos)
    n_pos = default if n_pos is None else n_pos
    n_neg = min(n_pos, total_neg) if n_neg is None else n_neg  # balanced unless asked otherwise
    attrs = _PairAttributes(data)
    if group_by is not None:
        _check_group_by(group_by, attrs, data.images())
    plan = PairPlan([], group_by=group_by, folds=[[p.name for p in f.persons] for f in folds])
    shortfalls: dict[tuple[str, str], list[int]] = defaultdict(list)
    for fold, pos_share, neg_share in zip(folds, _split(n_pos, n_folds), _split(n_neg, n_folds)):
        for same, share in ((True, pos_share), (False, neg_share)):
            chosen, short = _sample_fold(fold, same, share, rng, attrs, group_by)
            kind = "positive" if same else "negative"
            if len(chosen) < share:
                plan.notes.append(f"fold {fold.index}: only {len(chosen)} {kind} pairs possible, {share} requested")
            for value in short:
                shortfalls[(kind, value)].append(fold.index)
            for i, j in chosen:
                a, b = fold.images[i], fold.images[j]
                plan.pairs.append(GeneratedPair(a, b, same, fold.index, attrs.pair(a, b)))
    for (kind, value), where in sorted(shortfalls.items()):
        plan.notes.append(f"{kind} pairs with {group_by}={value or '(none)'} ran out in fold(s) "
                          f"{', '.join(map(str, where))}; other values filled their share")
    return plan


def _check_counts(n_folds: int, n_pos: int | None, n_neg: int | None) -> None:
    if n_folds < 1:
        raise UsageError(f"the number of folds must be at least 1, got {n_folds}")
    for name, value in (("same-person", n_pos), ("different-person", n_neg)):
        if value is not None and value < 0:
            raise UsageError(f"the number of {name} pairs cannot be negative, got {value}")


def _check_group_by(name: str, attrs: _PairAttributes, images: list[Path]) -> None:
    if not attrs.has(name, images):
        names = ", ".join(attrs.names(images)) or "none (neither the file names nor --metadata give any)"
        raise FacefitError(f"unknown attribute {name!r} to group pairs by; available: {names}")


def assign_folds(persons: list[Person], n_folds: int, rng: random.Random) -> list[list[Person]]:
    """Give each person to one fold, balancing image counts; every fold gets at least two persons."""
    if len(persons) < 2 * n_folds:
        most = len(persons) // 2
        limit = f"at most {most} fold(s) are possible" if most else "at least 2 persons are needed"
        raise FacefitError(f"{len(persons)} person(s) cannot fill {n_folds} folds: each fold needs 2 persons for "
                           f"different-person pairs, so {limit}")
    order = list(persons)
    rng.shuffle(order)  # the seed breaks ties between persons with equally many images
    order.sort(key=lambda p: len(p.images), reverse=True)
    folds: list[list[Person]] = [[] for _ in range(n_folds)]
    counts = [0] * n_folds
    for person in order:
        # Folds still short of two persons come first, so a very large person cannot leave a fold alone.
        target = min(range(n_folds), key=lambda f: (len(folds[f]) >= 2, counts[f], f))
        folds[target].append(person)
        counts[target] += len(person.images)
    return [sorted(f, key=lambda p: p.name) for f in folds]


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _sample_fold(fold: _Fold, same: bool, share: int, rng: random.Random, attrs: _PairAttributes,
                 group_by: str | None) -> tuple[list[Candidate], list[str]]:
    """The fold's pairs of one kind, and the group values that ran out (stratified only)."""
    total = fold.n_pos if same else fold.n_neg
    every = fold.all_pos if same else fold.all_neg
    draw = (lambda: fold.draw_pos(rng)) if same else (lambda: fold.draw_neg(rng))
    if share == 0 or total == 0:
        return [], []
    if group_by is None:
        return _unique(total, share, every, draw, rng), []
    # Each candidate's attributes cost time, so a big fold is bucketed from a random sample of it.
    candidates = _unique(total, min(total, max(OVERSAMPLE * share, STRATIFY_ALL)), every, draw, rng)

    def value(c: Candidate) -> str:
        return attrs.pair(fold.images[c[0]], fold.images[c[1]]).get(group_by, "")

    return _round_robin(candidates, value, share, rng)


def _unique(total: int, want: int, every: Callable[[], Iterator[Candidate]], draw: Callable[[], Candidate],
            rng: random.Random) -> list[Candidate]:
    """``want`` distinct candidates chosen uniformly (all ``total`` of them if fewer)."""
    if want >= total:
        return list(every())
    if total <= ENUMERATE_LIMIT or 2 * want > total:  # listing is cheap, or rejection would stall
        return rng.sample(list(every()), want)
    seen: dict[Candidate, None] = {}  # a dict keeps draw order, so results do not depend on hashing
    while len(seen) < want:
        seen[draw()] = None
    return list(seen)


def _round_robin(candidates: list[Candidate], value: Callable[[Candidate], str], share: int,
                 rng: random.Random) -> tuple[list[Candidate], list[str]]:
    """Take one candidate per value in turn (sorted values, shuffled pools) until ``share`` are taken."""
    pools: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        pools[value(c)].append(c)
    order = sorted(pools, key=lambda v: (v == "", v))  # pairs without the attribute form the last group
    for v in order:
        rng.shuffle(pools[v])
    taken = dict.fromkeys(order, 0)
    chosen: list[Candidate] = []
    active = list(order)
    while active and len(chosen) < share:
        for v in list(active):
            if len(chosen) == share:
                break
            if taken[v] == len(pools[v]):
                active.remove(v)
                continue
            chosen.append(pools[v][taken[v]])
            taken[v] += 1
    most = max(taken.values())
    short = [v for v in order if taken[v] == len(pools[v]) and taken[v] < most - 1]
    return chosen, short


def pairs_to_csv(plan: PairPlan, data: IdentityFolders, attribute_columns: list[str] | None = None) -> str:
    """The plan as a CSV pairs file ``path_a,path_b,same,fold[,attributes]`` (paths relative to the root)."""
    columns = attribute_columns if attribute_columns is not None else ([plan.group_by] if plan.group_by else [])
    clash = [c for c in columns if c.lower() in CSV_COLUMNS]
    if clash or len(set(columns)) != len(columns):
        raise UsageError(f"attribute columns must be distinct and not one of {', '.join(CSV_COLUMNS)}: "
                         f"{', '.join(columns)}")
    rows = sorted(([data.relative(p.a), data.relative(p.b), "1" if p.same else "0", str(p.fold),
                    *(p.attrs.get(c, "") for c in columns)] for p in plan.pairs),
                  key=lambda r: (int(r[3]), r[2] != "1", r[0], r[1]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *columns])
    writer.writerows(rows)
    return buf.getvalue()
