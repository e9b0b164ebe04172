"""Collecting input files and writing outputs without ever clobbering a user's file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from facefit.errors import OutputExistsError, UsageError
from facefit.io.images import is_image_name

T = TypeVar("T")


BAD_NAME = "the file name is not valid UTF-8 (rename it)"


def bad_name(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds bytes that are not UTF-8: such names cannot go into reports, CSVs or databases."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def shown(path: str | os.PathLike) -> str:
    """``path`` printable anywhere: undecodable bytes shown as ``\\xff``."""
    return os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class InputSet:
    """Image files found under the given inputs, and what was passed over."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # non-image files inside folders


def collect_images(inputs: Sequence[str | os.PathLike]) -> InputSet:
    """Expand files and folders (recursively, sorted) into image files.

    A file named explicitly is always kept, whatever its suffix, so that a bad
    file gets a clear error later instead of vanishing. Inside folders only
    image suffixes are taken; hidden entries are ignored and the rest listed as
    skipped. A missing input is an error.
    """
    result = InputSet()
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    p = Path(root) / name
                    (result.files if is_image_name(p) else result.skipped).append(p)
        else:
            result.files.append(path)
    unique = []
    for p in result.files:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    result.files = unique
    return result


def check_creatable(path: Path) -> None:
    """Refuse a path that could never be created because one of its would-be folders is a file."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{path}: cannot be created: {parent} is a file, not a folder")
            return


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; make sure its folder exists."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give a file name for this output")
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    check_creatable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out.parent}: cannot create folder: {exc.strerror or exc}") from None
    return out


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces it only if the block succeeds."""
    out = Path(path)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix or out.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def check_report_dir(out_dir: Path, overwrite: bool) -> None:
    """A report folder may be new or empty; a non-empty one only with ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file; the report needs a folder here")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(out_dir)
    check_creatable(out_dir)


def write_report_dir(out_dir: Path, writer: Callable[[Path], T]) -> T:
    """Run ``writer(tmp_folder)`` beside ``out_dir``, then move its files in: a failure leaves no half report."""
    import shutil

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        result = writer(tmp)
        out_dir.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
