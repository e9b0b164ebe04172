"""Collecting input files and writing outputs without ever clobbering a user's file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from facefit.errors import FacefitError, OutputExistsError, UsageError
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
    links: list[Path] = field(default_factory=list)  # links to folders inside folders: not followed

    def notes(self) -> list[str]:
        """One line for each kind of thing passed over, for the caller to print."""
        lines = []
        if self.skipped:
            lines.append(f"skipping {len(self.skipped)} non-image file(s) in the input folders, "
                         f"e.g. {self.skipped[0]}")
        if link := self.link_note():
            lines.append(link)
        return lines

    def link_note(self) -> str | None:
        """The line saying which links to folders were not followed, or None."""
        if not self.links:
            return None
        return f"not following {len(self.links)} link(s) to folders in the input folders, e.g. {self.links[0]}"


def _identity(path: Path) -> Path:
    """Where ``path`` really is, for spotting one file given twice; a link that loops or dangles is itself."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return path.absolute()


def collect_images(inputs: Sequence[str | os.PathLike]) -> InputSet:
    """Expand files and folders (recursively, sorted) into image files.

    A file named explicitly is always kept, whatever its suffix, so that a bad
    file gets a clear error later instead of vanishing; so is a broken or
    looping link. Inside folders only image suffixes are taken; hidden entries
    are ignored, the rest listed as skipped, and links to folders are listed,
    not followed. A missing input is an error.
    """
    result = InputSet()
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if not os.path.lexists(path):
            raise UsageError(f"{path}: no such file or folder")
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                visible = sorted(d for d in dirs if not d.startswith("."))
                result.links.extend(Path(root) / d for d in visible if os.path.islink(os.path.join(root, d)))
                dirs[:] = [d for d in visible if not os.path.islink(os.path.join(root, d))]
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    p = Path(root) / name
                    (result.files if is_image_name(p) else result.skipped).append(p)
        else:
            result.files.append(path)
    unique = []
    for p in result.files:
        key = _identity(p)
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


def _nearest_folder(path: Path) -> Path:
    """``path`` if it is a folder, else its closest existing ancestor."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            return folder
    return Path(".")


def check_folder_writable(folder: Path, target: Path) -> None:
    """Refuse ``target`` unless a file can be created in ``folder`` (or its closest existing ancestor).

    Tried for real, with a temporary file, so read-only file systems and missing rights are caught
    whoever runs it, before any work starts.
    """
    where = _nearest_folder(folder)
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".facefit-probe-")
    except OSError as exc:
        raise UsageError(f"{target}: cannot be written: {where} does not accept new files "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``, or one that cannot be written; make sure its folder exists."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give a file name for this output")
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    check_creatable(out)
    check_folder_writable(out.parent, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out.parent}: cannot create folder: {exc.strerror or exc}") from None
    return out


def check_not_input(path: str | os.PathLike, inputs: Sequence[str | os.PathLike],
                    what: str = "one of the input files") -> None:
    """Refuse an output that is one of the inputs: replacing it would destroy what is being read."""
    out = _identity(Path(path))
    for item in inputs:
        if _identity(Path(item)) == out:
            raise UsageError(f"{path}: is {what}; refusing to replace it, even when overwriting is allowed")


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failure while writing ``path`` (disk full, rights taken away) into one line naming it."""
    try:
        yield
    except OSError as exc:
        raise FacefitError(f"{path}: cannot be written: {exc.strerror or exc}; nothing was saved there") from None


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
    """Write ``text`` to ``path`` atomically; a failure is one FacefitError naming the path."""
    with writing(path), atomic_path(path) as tmp:
        tmp.write_text(text)


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_path)`` and move the result into place atomically; a failure names the path."""
    with writing(path), atomic_path(path) as tmp:
        writer(tmp)


def check_report_dir(out_dir: Path, overwrite: bool) -> None:
    """A report folder may be new or empty; a non-empty one only with ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file; the report needs a folder here")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(out_dir)
    check_creatable(out_dir)
    check_folder_writable(out_dir.parent, out_dir)  # the report is assembled beside it, then moved in
    if out_dir.is_dir():
        check_folder_writable(out_dir, out_dir)


def write_report_dir(out_dir: Path, writer: Callable[[Path], T]) -> T:
    """Run ``writer(tmp_folder)`` beside ``out_dir``, then move its files in: a failure leaves no half report."""
    import shutil

    with writing(out_dir):
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
