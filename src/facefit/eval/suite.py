"""Evaluation suites: several verification benchmarks, each run exactly as a single evaluation, plus the
error rates per population at one shared threshold.

A suite file (YAML)::

    reference: lfw        # whose different-person pairs fix the shared threshold (default: the first benchmark)
    fmr: 1.0e-3           # the FMR the shared threshold is set to on the reference (default 1e-3)
    benchmarks:
      - {name: korean-val, root: ../data/kfamily/val, pairs: ../data/kfamily/val_pairs.csv, population: korean}
      - {name: lfw, root: ../data/lfw/images, pairs: ../data/lfw/pairs.txt, population: lfw}
      - {name: agedb, bin: agedb_30.bin, population: agedb}

Relative paths are resolved against the suite file's folder. Every problem is a ``SuiteError`` naming the file
and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from facefit.errors import UsageError
from facefit.io.assets import sha256_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SuiteError(UsageError):
    """A suite file that cannot be used; the message names the file and the key."""


class SuiteBenchmark(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique; letters, digits, '.', '_' and '-'")
    root: Path | None = Field(None, description="folder the pairs' image paths are relative to")
    pairs: Path | None = Field(None, description="LFW pairs.txt or CSV")
    bin: Path | None = Field(None, description="an insightface verification .bin (holds its own pairs)")
    population: str | None = Field(None, description="free label, several benchmarks may share one "
                                                     "(default: the benchmark's name)")

    @property
    def population_label(self) -> str:
        return self.population or self.name


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str | None = Field(None, description="the benchmark whose FMR fixes the shared threshold")
    fmr: float = Field(1e-3, gt=0.0, lt=1.0, description="the FMR the shared threshold is set to")
    benchmarks: list[SuiteBenchmark] = Field(min_length=1)
    _source: Path | None = PrivateAttr(None)  # the file it was read from (set by load_suite)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def reference_name(self) -> str:
        return self.reference or self.benchmarks[0].name

    def populations(self) -> dict[str, list[str]]:
        """Population label -> the names of its benchmarks, in suite order."""
        out: dict[str, list[str]] = {}
        for b in self.benchmarks:
            out.setdefault(b.population_label, []).append(b.name)
        return out


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "suite"


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file: known keys only, unique names, a known reference, existing paths."""
    import yaml

    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: cannot read suite: {' '.join(str(exc).split())}") from None
    if not isinstance(tree, dict):
        raise SuiteError(f"{path}: a suite must be a mapping with a 'benchmarks' list, got "
                         f"{type(tree).__name__}")
    try:
        suite = Suite.model_validate(tree)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            allowed = SuiteBenchmark.model_fields if len(loc) > 1 else Suite.model_fields
            names = ", ".join(allowed)
            msg = f"unknown key (allowed: {names})"
        elif e["type"] == "missing":
            msg = "missing"
        else:
            msg = e["msg"]
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise SuiteError(f"{path}: {_key(loc)}: {msg}{more}") from None
    return _check(suite, path)


def _check(suite: Suite, path: Path) -> Suite:
    base = path.parent
    seen: dict[str, int] = {}
    benchmarks = []
    for i, b in enumerate(suite.benchmarks):
        where = f"{path}: benchmarks[{i}]"
        if not _NAME.match(b.name):
            raise SuiteError(f"{where}.name: {b.name!r} must be letters, digits, '.', '_' or '-' (it names files)")
        if b.name in seen:
            raise SuiteError(f"{where}.name: {b.name!r} is already the name of benchmarks[{seen[b.name]}]")
        seen[b.name] = i
        if b.population is not None and not b.population.strip():
            raise SuiteError(f"{where}.population: empty")
        if b.bin is not None:
            if b.root is not None or b.pairs is not None:
                key = "root" if b.root is not None else "pairs"
                raise SuiteError(f"{where}.{key}: not with 'bin' (a .bin holds its own images and pairs)")
        else:
            for key in ("root", "pairs"):
                if getattr(b, key) is None:
                    raise SuiteError(f"{where}.{key}: missing ({b.name!r} needs 'root' and 'pairs', or 'bin')")
        resolved = {}
        for key in ("root", "pairs", "bin"):
            value = getattr(b, key)
            if value is None:
                continue
            full = value.expanduser()
            full = Path(os.path.normpath(full if full.is_absolute() else base.absolute() / full))
            if not full.exists():
                raise SuiteError(f"{where}.{key}: {full}: no such file or folder")
            if key == "root" and not full.is_dir():
                raise SuiteError(f"{where}.{key}: {full}: not a folder")
            if key != "root" and not full.is_file():
                raise SuiteError(f"{where}.{key}: {full}: not a file")
            resolved[key] = full
        benchmarks.append(b.model_copy(update=resolved))
    if suite.reference is not None and suite.reference not in seen:
        raise SuiteError(f"{path}: reference: {suite.reference!r} is not a benchmark's name (one of: "
                         f"{', '.join(seen)})")
    checked = suite.model_copy(update={"benchmarks": benchmarks})
    checked._source = path
    return checked


# ------------------------------------------------------------------------------------------------ running


@dataclass
class BenchmarkRun:
    benchmark: SuiteBenchmark
    run: Any  # facefit.eval.run.EvalRun
    root: Path  # the folder its images are under (a .bin's import folder)
    pairs_file: Path


@dataclass
class SuiteRun:
    suite: Suite
    runs: list[BenchmarkRun]
    seconds: dict[str, float]


def read_suite_pairs(suite: Suite, *, n_folds: int = 10, bin_cache: Path | None = None,
                     log: Callable[[str], None] = lambda _: None) -> list[tuple[SuiteBenchmark, Any, Path, Path]]:
    """Every benchmark's pairs read (a .bin imported once into ``bin_cache``) and the populations checked:
    each needs different-person pairs, or its FMR cannot be measured."""
    import numpy as np

    from facefit.data.pairs import PairsError, read_pairs

    where = suite.source or Path("suite")
    out = []
    for i, b in enumerate(suite.benchmarks):
        if b.bin is not None:
            from facefit.data.convert import cached_bin_import
            from facefit.io.assets import cache_dir

            root = cached_bin_import(b.bin, bin_cache or cache_dir())
            pairs_file = root / "pairs.csv"
            log(f"{b.name}: insightface verification set {b.bin}, imported to {root}")
        else:
            assert b.root is not None and b.pairs is not None
            root, pairs_file = b.root, b.pairs
        try:
            pair_set = read_pairs(pairs_file, root, n_folds=n_folds)
        except PairsError as exc:
            raise PairsError(f"{where}: benchmarks[{i}] ({b.name}): {exc}") from None
        out.append((b, pair_set, root, pairs_file))
    negatives: dict[str, int] = {}
    for b, pair_set, _, _ in out:
        n = int(np.count_nonzero([not p.same for p in pair_set.pairs]))
        negatives[b.population_label] = negatives.get(b.population_label, 0) + n
        if b.name == suite.reference_name and n == 0:
            key = "reference" if suite.reference else "benchmarks[0]"
            raise SuiteError(f"{where}: {key}: the reference benchmark {b.name!r} has no different-person pairs, "
                             f"so no threshold can be set at an FMR")
    for pop, n in negatives.items():
        if n == 0:
            i = next(i for i, b in enumerate(suite.benchmarks) if b.population_label == pop)
            key = "population" if suite.benchmarks[i].population else "name"
            raise SuiteError(f"{where}: benchmarks[{i}].{key}: population {pop!r} has no different-person pairs, "
                             f"so its FMR cannot be measured")
    return out


def run_suite(suite: Suite, models: list[tuple[str, Any]], options: Any, cache: Any, *, bin_cache: Path | None = None,
              progress: Any = None, log: Callable[[str], None] = lambda _: None,
              read: list[tuple[SuiteBenchmark, Any, Path, Path]] | None = None) -> SuiteRun:
    """Each benchmark evaluated by ``facefit.eval.run.evaluate``, exactly as a single evaluation is.

    ``read``: ``read_suite_pairs``'s result when the caller checked the pairs already (before loading models).
    """
    import time

    from facefit.eval.run import evaluate
    from facefit.io.progress import no_progress

    if read is None:
        read = read_suite_pairs(suite, n_folds=options.n_folds, bin_cache=bin_cache, log=log)
    runs, seconds = [], {}
    for b, pair_set, root, pairs_file in read:
        for note in pair_set.notes:
            log(f"{b.name}: {note}")
        log(f"{b.name} ({b.population_label}): {len(pair_set)} pairs over {len(pair_set.images())} images, "
            f"{len(pair_set.folds)} folds")
        t0 = time.perf_counter()
        run = evaluate(pair_set, models, options, cache, progress=progress or no_progress)
        seconds[b.name] = time.perf_counter() - t0
        runs.append(BenchmarkRun(b, run, root, pairs_file))
    return SuiteRun(suite, runs, seconds)


def suite_digest(path: Path) -> str:
    return sha256_file(path)
