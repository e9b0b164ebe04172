"""Shared pieces of the CLI: consoles, progress bars, failure reports. Imports stay light."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from facefit.data.folders import IdentityFolders


def _width(stream) -> int | None:
    # Rich assumes 80 columns when not on a terminal; tables of results need more.
    return None if stream.isatty() or os.environ.get("COLUMNS") else 120


err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))
out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))


class Metric(enum.StrEnum):
    euclidean = "euclidean"
    cosine = "cosine"


class EvalMetric(enum.StrEnum):
    auto = "auto"
    euclidean = "euclidean"
    cosine = "cosine"


class Faces(enum.StrEnum):
    all = "all"
    largest = "largest"
    center = "center"


class Detector(enum.StrEnum):
    model = "model"  # the model's own: its recipe's detector (dlib-resnet: hog; sface: yunet)
    hog = "hog"
    mmod = "mmod"
    yunet = "yunet"
    auto = "auto"

    @property
    def name_or_none(self) -> str | None:
        """The detector name for the library, or None for the model's own."""
        return None if self is Detector.model else self.value


DETECTOR_HELP = ("model: the model's own (dlib-resnet: hog; sface: yunet); hog: dlib's HOG; yunet: OpenCV's YuNet "
                 "(fast, finds more faces); mmod: dlib's CNN (slow); auto: hog, padded hog, yunet, then mmod.")
DetectorOpt = Annotated[Detector, typer.Option("--detector", help=DETECTOR_HELP)]


# Options shared by the benchmarks.
BenchJsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")]
BenchOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Also write the results as JSON to this file.",
                                                  show_default=False)]
BenchOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")]


def bench_results(table: object, doc: dict, as_json: bool, path: Path | None) -> None:
    """A benchmark's results: the table (or, with --json, the JSON document) on stdout; the JSON in ``path``."""
    import json

    from facefit.io.files import write_text_atomic

    text = json.dumps(doc, indent=2)
    if as_json:
        print(text)
    else:
        out.print(table)
    if path is not None:
        write_text_atomic(path, text)
        err.print(f"wrote {path}", markup=False)

# Options shared by the evaluation commands (eval, eval-1n).
EvalDetectorOpt = DetectorOpt
WorkersOpt = Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Detection processes.")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Cache database (default: "
                                                               "$FACEFIT_CACHE/eval-cache.sqlite).")]
ReportOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace report files in an existing folder.")]


def distance_threshold(value: float | None) -> float | None:
    """Option callback: a distance threshold is a finite number above 0."""
    if value is not None:
        from facefit.distances import is_threshold  # here, not at the top: --help stays free of numpy

        if not is_threshold(value):
            raise typer.BadParameter(f"must be a distance above 0, got {value}")
    return value


def warn(message: str) -> None:
    err.print(f"facefit: warning: {message}", markup=False)


def info(message: str) -> None:
    err.print(message, markup=False)


def progress_enabled() -> bool:
    flag = os.environ.get("FACEFIT_PROGRESS", "auto").lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


class _Bar:
    def __init__(self, progress, task) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1) -> None:
        if self._p is not None:
            self._p.advance(self._t, n)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[_Bar]:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""
    if not progress_enabled():
        yield _Bar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as p:
        yield _Bar(p, p.add_task(description, total=total))


def report_failures(failures: Sequence[tuple[str, str]], failures_path: Path | None, total: int, what: str) -> None:
    """Print each failure on one line, a count, and where the list was written."""
    for path, reason in failures:
        err.print(f"facefit: {path}: {reason}", markup=False)
    if failures:
        where = f"; list written to {failures_path}" if failures_path else ""
        warn(f"{len(failures)} of {total} {what} failed{where}")


def write_failures(path: Path, failures: Sequence[tuple[str, str]]) -> None:
    from facefit.io.files import write_text_atomic

    lines = ["path\treason"] + [f"{p}\t{r}" for p, r in failures]
    write_text_atomic(path, "\n".join(lines) + "\n")


def report_scan(data: IdentityFolders, metadata: Path | None) -> None:
    """Warn about everything a data set scan passed over, so nothing vanishes silently (pairs, eval-1n)."""
    if data.skipped:
        warn(f"skipping {len(data.skipped)} file(s) that are not images in person folders, e.g. {data.skipped[0]}")
    if data.empty:
        warn(f"{len(data.empty)} person folder(s) contain no image, e.g. {data.empty[0]}")
    if note := data.bad_name_note():
        warn(note)
    if note := data.link_note():
        warn(note)
    if metadata is not None and data.unmatched_metadata:
        warn(f"{data.unmatched_metadata} metadata row(s) in {metadata} match no image")
    if metadata is not None and not data.metadata:
        warn(f"no row of {metadata} matches an image under {data.root}")
