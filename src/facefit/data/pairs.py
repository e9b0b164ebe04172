"""Verification pairs files: LFW ``pairs.txt`` and CSV.

LFW: a header ``folds n`` (or just ``n`` for one set), then per fold ``n``
same-person lines ``name i j`` and ``n`` different-person lines
``name1 i name2 j``; images are ``ROOT/name/name_%04d.jpg``.

CSV: columns ``path_a,path_b,same`` (paths relative to ROOT), optional ``fold``,
and any further columns, which name subgroups. Without a ``fold`` column, pairs
are assigned to folds by a stable hash of path_a's folder (its person, in
identity-folder data sets), so one person's pairs stay in one fold.

Every problem is reported with its line number, and a pair whose image is
missing is an error: pairs are never silently dropped. Repeated pairs and
self-pairs are kept (evaluated as given) but counted in ``warnings``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facefit.data.attributes import pair_attributes
from facefit.errors import FacefitError
from facefit.io.assets import sha256_file

REQUIRED = ("path_a", "path_b", "same")
_TRUE = {"1", "true", "yes", "same", "y", "t"}
_FALSE = {"0", "false", "no", "diff", "different", "n", "f"}


class PairsError(FacefitError):
    """A malformed or inconsistent pairs file."""


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int
    line: int  # line number in the pairs file, for messages
    attrs: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class PairSet:
    pairs: list[Pair]
    source: Path
    format: str  # "lfw" or "csv"
    root: Path
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # things that bias the results: to be shown as warnings

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def folds(self) -> list[int]:
        return sorted({p.fold for p in self.pairs})

    @property
    def attribute_names(self) -> list[str]:
        return sorted({k for p in self.pairs for k in p.attrs})

    def images(self) -> list[Path]:
        """Unique images, in first-use order."""
        seen: dict[Path, None] = {}
        for p in self.pairs:
            seen.setdefault(p.a)
            seen.setdefault(p.b)
        return list(seen)


def _lfw_path(root: Path, name: str, idx: str, where: str) -> Path:
    try:
        n = int(idx)
    except ValueError:
        raise PairsError(f"{where}: image number {idx!r} is not a whole number") from None
    if n < 1:
        raise PairsError(f"{where}: image number {n} must be >= 1")
    return root / name / f"{name}_{n:04d}.jpg"


def _read_lfw(text: str, source: Path, root: Path) -> PairSet:
    lines = text.splitlines()
    header = lines[0].split()
    try:
        nums = [int(v) for v in header]
    except ValueError:
        raise PairsError(f"{source}:1: LFW header must be 'folds n' or 'n', got {lines[0]!r}") from None
    folds, per = (1, nums[0]) if len(nums) == 1 else (nums[0], nums[1])
    if len(nums) > 2 or folds < 1 or per < 1:
        raise PairsError(f"{source}:1: LFW header must be 'folds n' with positive numbers, got {lines[0]!r}")
    body = [(i + 2, ln) for i, ln in enumerate(lines[1:]) if ln.strip()]
    if len(body) != folds * 2 * per:
        raise PairsError(f"{source}: header promises {folds} folds x {2 * per} pairs = {folds * 2 * per} lines, "
                         f"found {len(body)}")
    pairs = []
    for k, (lineno, ln) in enumerate(body):
        f = ln.split()
        where = f"{source}:{lineno}"
        if len(f) == 3:
            a, b, same = _lfw_path(root, f[0], f[1], where), _lfw_path(root, f[0], f[2], where), True
        elif len(f) == 4:
            a, b, same = _lfw_path(root, f[0], f[1], where), _lfw_path(root, f[2], f[3], where), False
        else:
            raise PairsError(f"{where}: expected 'name i j' or 'name1 i name2 j', got {len(f)} fields: {ln.strip()!r}")
        pairs.append(Pair(a, b, same, k // (2 * per), lineno, pair_attributes(a, b)))
    return PairSet(pairs, source, "lfw", root)


def _parse_same(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise PairsError(f"{where}: 'same' must be 1/0 or true/false, got {value!r}")


def _stable_fold(key: str, n_folds: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n_folds


def _read_csv(text: str, source: Path, root: Path, n_folds: int) -> PairSet:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise PairsError(f"{source}: empty file") from None
    lower = [h.lower() for h in header]
    missing = [c for c in REQUIRED if c not in lower]
    if missing:
        raise PairsError(f"{source}:1: missing column(s) {', '.join(missing)}; a CSV pairs file needs "
                         f"path_a,path_b,same[,fold][,subgroup columns...], found {','.join(header)}")
    if len(set(lower)) != len(lower):
        raise PairsError(f"{source}:1: duplicate column names in {','.join(header)}")
    col = {name: lower.index(name) for name in (*REQUIRED, "fold") if name in lower}
    extra = [(i, header[i]) for i, h in enumerate(lower) if h not in (*REQUIRED, "fold")]
    notes = []
    if extra:
        notes.append(f"subgroup columns: {', '.join(h for _, h in extra)}")
    pairs = []
    for row in reader:
        lineno = reader.line_num
        if not any(c.strip() for c in row):
            continue
        where = f"{source}:{lineno}"
        if len(row) != len(header):
            raise PairsError(f"{where}: expected {len(header)} fields as in the header, got {len(row)}")
        pa, pb = row[col["path_a"]].strip(), row[col["path_b"]].strip()
        if not pa or not pb:
            raise PairsError(f"{where}: empty path")
        a, b = root / pa, root / pb
        same = _parse_same(row[col["same"]], where)
        if "fold" in col:
            try:
                fold = int(row[col["fold"]])
            except ValueError:
                raise PairsError(f"{where}: fold {row[col['fold']]!r} is not a whole number") from None
        else:
            fold = _stable_fold(str(Path(pa).parent), n_folds)
        attrs = pair_attributes(pa, pb)
        for i, h in extra:
            if row[i].strip():
                attrs[h] = row[i].strip()
        pairs.append(Pair(a, b, same, fold, lineno, attrs))
    if not pairs:
        raise PairsError(f"{source}: no pairs after the header")
    if "fold" not in col:
        used = len({p.fold for p in pairs})  # few person folders can leave some of the hashed folds empty
        notes.append(f"no 'fold' column: pairs assigned to {used} folds by a hash of path_a's folder"
                     + (f" ({n_folds} asked; the others got no pair)" if used < n_folds else ""))
    return PairSet(pairs, source, "csv", root, notes)


def _image_key(path: Path) -> str:
    return os.path.normpath(path)


def repeated_pairs(pairs: Sequence[Pair]) -> tuple[list[tuple[Pair, Pair]], list[Pair]]:
    """(each pair repeating an earlier one, in either order, with that earlier one; pairs of an image with itself)."""
    first: dict[frozenset[str], Pair] = {}
    repeats, selves = [], []
    for pair in pairs:
        a, b = _image_key(pair.a), _image_key(pair.b)
        if a == b:
            selves.append(pair)
        key = frozenset((a, b))
        if key in first:
            repeats.append((pair, first[key]))
        else:
            first[key] = pair
    return repeats, selves


def repeat_warnings(pairs: PairSet) -> list[str]:
    """One line each on repeated pairs and self-pairs, with how many and where; empty when there are none."""
    repeats, selves = repeated_pairs(pairs.pairs)
    lines = []
    if repeats:
        pair, earlier = repeats[0]
        clashes = sum(p.same != q.same for p, q in repeats)
        clash = f"; {clashes} of them with the opposite same/different label" if clashes else ""
        lines.append(f"{pairs.source}: {len(repeats)} of {len(pairs)} pairs repeat an earlier pair (the same two "
                     f"images, in either order), e.g. line {pair.line} repeats line {earlier.line}{clash}; "
                     f"each is counted every time it appears")
    if selves:
        lines.append(f"{pairs.source}: {len(selves)} pair(s) compare an image with itself (distance 0, always a "
                     f"match), e.g. line {selves[0].line}; they are counted as given")
    return lines


def check_images(pairs: PairSet) -> None:
    """Fail, naming them, if any image referenced by a pair is missing."""
    from facefit.io.images import link_problem

    missing = [p for p in pairs.images() if not p.is_file()]
    if missing:
        lines = {}
        for pr in pairs.pairs:
            for img in (pr.a, pr.b):
                if img in missing and img not in lines:
                    lines[img] = pr.line
        why = {m: f": {problem}" for m in missing[:5] if (problem := link_problem(m))}
        shown = "; ".join(f"{m} (line {lines[m]}{why.get(m, '')})" for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise PairsError(f"{pairs.source}: {len(missing)} image(s) referenced by pairs do not exist under "
                         f"{pairs.root}: {shown}{more}")


def read_pairs(path: str | Path, root: str | Path, *, n_folds: int = 10, check: bool = True) -> PairSet:
    """Read an LFW pairs.txt or a CSV pairs file; image paths are resolved under ``root``."""
    source, root = Path(path), Path(root)
    if source.is_dir():
        raise PairsError(f"{source}: is a folder; give the pairs file (pairs.txt or a CSV) itself")
    if not source.is_file():
        raise PairsError(f"{source}: no such pairs file")
    if not root.is_dir():
        raise PairsError(f"{root}: no such image folder")
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsError(f"{source}: cannot read as text: {exc}") from None
    if not text.strip():
        raise PairsError(f"{source}: empty file")
    first = text.lstrip().splitlines()[0]
    is_lfw = all(tok.isdigit() for tok in first.split()) and len(first.split()) in (1, 2)
    if is_lfw:
        # The LFW archive unpacks to lfw/<name>/...; accept its parent folder too.
        probe = next((ln.split()[0] for ln in text.splitlines()[1:] if ln.strip()), None)
        if probe and not (root / probe).is_dir() and (root / "images" / probe).is_dir():
            root = root / "images"
        pairs = _read_lfw(text, source, root)
    else:
        pairs = _read_csv(text, source, root, n_folds)
    pairs.warnings = repeat_warnings(pairs)
    if check:
        check_images(pairs)
    return pairs


def pairs_digest(path: str | Path) -> str:
    return sha256_file(path)


def group_labels(pairs: PairSet) -> dict[str, list[str | None]]:
    """One label list per attribute, aligned with ``pairs.pairs`` (None where a pair lacks it)."""
    names: Sequence[str] = pairs.attribute_names
    return {n: [p.attrs.get(n) for p in pairs.pairs] for n in names}
