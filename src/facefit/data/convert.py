"""Turn insightface's ``.rec`` and ``.bin`` files into the folders every facefit command reads.

A ``.rec`` becomes identity folders (``OUT/<class>/<record>.jpg``), a ``.bin``
becomes ``OUT/images/`` plus ``OUT/pairs.csv`` with insightface's 10 folds. The
encoded bytes are copied as they are (no re-encoding), after checking that each
one decodes. Everything is written into a temporary folder beside ``OUT`` and
moved into place at the end, so a failed or killed import leaves no half folder.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from facefit.data.insightface import FormatError, RecordFile, image_suffix, iter_rec_images, read_bin
from facefit.errors import FacefitError, ImageError
from facefit.io.files import check_creatable
from facefit.io.progress import ProgressFactory, no_progress


@dataclass
class ImportResult:
    out_dir: Path
    kind: str  # "rec" or "bin"
    images: int
    persons: int = 0
    pairs: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (record, reason)


def import_insightface(src: Path, out_dir: Path, *, progress: ProgressFactory = no_progress) -> ImportResult:
    """Convert ``src`` (``.rec`` or ``.bin``) into ``out_dir``, which must not exist or be empty."""
    src = Path(src)
    if out_dir.exists() and not out_dir.is_dir():
        raise FacefitError(f"{out_dir}: is a file; --out must be a new or empty folder")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FacefitError(f"{out_dir}: already exists and is not empty; choose a new --out folder")
    check_creatable(out_dir)
    if src.suffix == ".rec":
        convert: Callable[[Path, Path, ProgressFactory], ImportResult] = _import_rec
    elif src.suffix == ".bin":
        convert = _import_bin
    else:
        raise FacefitError(f"{src}: expected an insightface .rec (training set) or .bin (verification pairs)")
    if not src.is_file():
        raise FacefitError(f"{src}: no such file")
    with _staging(out_dir) as tmp:
        result = convert(src, tmp, progress)
    result.out_dir = out_dir
    return result


@contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.import-"))
    try:
        yield tmp
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above; os.replace needs it gone
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_image(data: bytes, where: str) -> str:
    """The suffix for ``data`` if it decodes as an image; raises ImageError naming ``where`` otherwise."""
    from facefit.io.images import load_image

    try:
        suffix = image_suffix(data)
    except FormatError as exc:
        raise ImageError(where, str(exc)) from None
    load_image(data, name=where)
    return suffix


def _import_rec(src: Path, out: Path, progress: ProgressFactory) -> ImportResult:
    result = ImportResult(out, "rec", 0)
    labels: set[int] = set()
    with RecordFile(src) as rec:
        total = None
        if rec.index is not None:
            total = len(rec.index)
        with progress(f"importing {src.name}", total) as bar:
            def damaged(key: int, reason: str) -> None:
                # The row already names the file and record; keep just the reason.
                reason = reason.removeprefix(f"{src}: ").removeprefix(f"{src} record {key}: ")
                result.failures.append((f"{src}#{key}", reason))
                bar.advance()

            for item in iter_rec_images(rec, on_error=damaged):
                where = f"{src}#{item.key}"
                try:
                    suffix = _check_image(item.data, where)
                except ImageError as exc:
                    result.failures.append((where, exc.reason))
                    bar.advance()
                    continue
                folder = out / f"{item.label:06d}"
                if item.label not in labels:
                    folder.mkdir()
                    labels.add(item.label)
                (folder / f"{item.key:08d}{suffix}").write_bytes(item.data)
                result.images += 1
                bar.advance()
    if not result.images:
        raise FacefitError(f"{src}: no readable image in the file"
                           + (f" ({len(result.failures)} failed, e.g. {result.failures[0][1]})"
                              if result.failures else ""))
    result.persons = len(labels)
    return result


def _import_bin(src: Path, out: Path, progress: ProgressFactory) -> ImportResult:
    pairs = read_bin(src)
    images = out / "images"
    images.mkdir()
    names: list[str] = []
    bad: list[tuple[str, str]] = []
    width = max(5, len(str(len(pairs.images))))
    with progress(f"importing {src.name}", len(pairs.images)) as bar:
        for i, data in enumerate(pairs.images):
            where = f"{src}#{i}"
            try:
                suffix = _check_image(data, where)
            except ImageError as exc:
                bad.append((where, exc.reason))
                suffix = ".bin"
            name = f"{i:0{width}d}{suffix}"
            (images / name).write_bytes(data)
            names.append(name)
            bar.advance()
    if bad:
        # A verification protocol with holes in it is not the protocol: refuse rather than drop pairs.
        raise FacefitError(f"{src}: {len(bad)} of {len(pairs.images)} images do not decode, e.g. image "
                           f"{bad[0][0].rsplit('#', 1)[1]} (pair {int(bad[0][0].rsplit('#', 1)[1]) // 2}): "
                           f"{bad[0][1]}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path_a", "path_b", "same", "fold"])
    for k, (same, fold) in enumerate(zip(pairs.same, pairs.folds)):
        w.writerow([f"images/{names[2 * k]}", f"images/{names[2 * k + 1]}", int(same), int(fold)])
    (out / "pairs.csv").write_text(buf.getvalue())
    return ImportResult(out, "bin", len(names), pairs=len(pairs.same))


def cached_bin_import(src: Path, cache_root: Path) -> Path:
    """``src`` (a verification ``.bin``) imported once into ``cache_root``, keyed by its content; the folder."""
    from facefit.io.assets import sha256_file

    if not Path(src).is_file():
        raise FacefitError(f"{src}: no such file")
    target = cache_root / "imported" / f"{Path(src).stem}-{sha256_file(src)[:16]}"
    if not (target / "pairs.csv").is_file():
        if target.exists():
            shutil.rmtree(target)  # a cache entry without its pairs file is incomplete: redo it
        import_insightface(src, target)
    return target
