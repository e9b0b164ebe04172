"""Identity-folder data sets: ``ROOT/<person>/<image>`` (images may sit deeper, e.g. K-Face ``ID/S001/L1/E01/C7.jpg``).

Every file found is accounted for: images belong to the person whose folder
holds them, and anything else is listed in ``skipped`` for the caller to
report. An optional metadata CSV adds per-image attributes (for subgroups).
Links to folders that point back into the tree (or above it) are never
followed: they would make a person of other people's photos. Links inside a
person's folder are not followed either; both are listed in ``links``. Links
that loop or lead nowhere are left out and listed in ``broken``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from facefit.data.attributes import image_attributes
from facefit.errors import FacefitError
from facefit.io.files import bad_name, shown
from facefit.io.images import is_image_name

NAME_COLUMNS = ("path", "file")  # how a metadata row names its image, in order of preference
IGNORED_COLUMNS = ("person_id", "person")  # the folder already says who it is


@dataclass
class Person:
    name: str  # folder name
    images: list[Path]  # sorted


@dataclass
class IdentityFolders:
    root: Path
    persons: list[Person]  # sorted by name; only persons with >= 1 image
    skipped: list[Path] = field(default_factory=list)  # non-image files (and loose images beside person folders)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # relative posix path -> attributes
    unmatched_metadata: int = 0  # metadata rows naming no image of the data set
    empty: list[Path] = field(default_factory=list)  # person folders without any image
    bad_names: list[Path] = field(default_factory=list)  # folders and images whose names are not UTF-8: left out
    links: list[Path] = field(default_factory=list)  # links to folders that were not followed
    broken: list[Path] = field(default_factory=list)  # links that loop or lead nowhere: left out

    def link_note(self) -> str | None:
        """One line on the links that were not followed or left out, or None."""
        parts = []
        if self.links:
            parts.append(f"did not follow {len(self.links)} link(s) to folders (back into the tree, out of it when "
                         f"enrolling, or inside a person's folder), e.g. {shown(self.links[0])}")
        if self.broken:
            parts.append(f"left out {len(self.broken)} link(s) that loop or lead nowhere, e.g. {shown(self.broken[0])}")
        return f"{self.root}: " + "; ".join(parts) if parts else None

    def bad_name_note(self) -> str | None:
        """One line on what was left out for its name, or None."""
        if not self.bad_names:
            return None
        return (f"{self.root}: left out {len(self.bad_names)} folder(s)/image(s) whose names are not valid UTF-8 "
                f"(rename them), e.g. {shown(self.bad_names[0])}")

    @classmethod
    def scan(cls, root: str | os.PathLike, *, metadata: str | os.PathLike | None = None,
             outside_links: bool = True) -> IdentityFolders:
        """Find the persons under ``root`` and, if given, attach the metadata CSV.

        Person folders that are links out of the tree are followed only if ``outside_links``.
        """
        root = Path(root)
        if not root.is_dir():
            if root.is_file() and root.suffix in (".rec", ".bin"):
                raise FacefitError(f"{root}: an insightface {root.suffix} file, not a folder; convert it first with "
                                   f"'facefit import {root} --out DIR' and use DIR")
            what = "is not a folder" if root.exists() else "no such folder"
            raise FacefitError(f"{root}: {what}; expected a folder with one sub-folder of images per person")
        if bad_name(root):
            raise FacefitError(f"{shown(root)}: the folder's name is not valid UTF-8; rename it")
        folders, loose, skipped = _top_level(root)
        folders, links = _drop_links(root, folders, outside_links)
        folders, bad = _by_name(folders, lambda f: f.name)
        if not folders:
            if loose:
                raise FacefitError(f"{root} looks like a folder of images, not of persons: {len(loose)} image(s) "
                                   f"such as {loose[0].name} sit directly in it; put each person's images in "
                                   f"a sub-folder named after the person")
            raise FacefitError(f"{root}: no person folders found (expected ROOT/<person>/<images>)")
        skipped.extend(loose)
        persons, empty, broken = [], [], []
        for folder in folders:
            images, other, inner_links = _walk_person(folder)
            skipped.extend(other)
            links.extend(inner_links)
            broken.extend(p for p in images if not p.exists())  # only a link can be listed yet not exist
            images = [p for p in images if p.exists()]
            images, odd = _by_name(images, lambda p: p)
            bad.extend(odd)
            if images:
                persons.append(Person(folder.name, images))
            else:
                empty.append(folder)
        if not persons:
            raise FacefitError(f"{root}: none of its {len(folders)} person folder(s) contains an image")
        data = cls(root, persons, skipped, empty=empty, bad_names=bad, links=links, broken=broken)
        if metadata is not None:
            data.metadata, data.unmatched_metadata = _read_metadata(Path(metadata), data)
        return data

    @property
    def n_images(self) -> int:
        return sum(len(p.images) for p in self.persons)

    def images(self) -> list[Path]:
        """All images, person by person."""
        return [img for p in self.persons for img in p.images]

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` as a posix path relative to the root (paths already relative are taken as such)."""
        text, prefix = os.fspath(path), os.path.join(os.fspath(self.root), "")
        if text.startswith(prefix):  # the usual case, and far faster than pathlib on big data sets
            return text[len(prefix):].replace(os.sep, "/")
        p = Path(path)
        if not p.is_absolute() and not p.is_relative_to(self.root):
            return p.as_posix()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            raise FacefitError(f"{p}: not inside the data set folder {self.root}") from None

    def attributes(self, path: str | os.PathLike) -> dict[str, str]:
        """Attributes from the file name, overridden by the metadata row's."""
        rel = self.relative(path)
        return {**image_attributes(rel), **self.metadata.get(rel, {})}


def _by_name(paths: list[Path], name: Callable[[Path], str | Path]) -> tuple[list[Path], list[Path]]:
    """(paths whose ``name`` is UTF-8, those whose name is not)."""
    good, bad = [], []
    for p in paths:
        (bad if bad_name(name(p)) else good).append(p)
    return good, bad


def _visible(entries: list[os.DirEntry]) -> list[os.DirEntry]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _top_level(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Split ROOT's entries into person folders, loose images and other files."""
    folders, loose, other = [], [], []
    with os.scandir(root) as it:
        for entry in _visible(list(it)):
            path = root / entry.name
            if entry.is_dir():
                folders.append(path)
            elif is_image_name(path):
                loose.append(path)
            else:
                other.append(path)
    return folders, loose, other


def _leads_into(target: Path, tree: Path) -> bool:
    """Whether a link to ``target`` leads into ``tree``, to it, or to a folder holding it (a loop)."""
    return target == tree or tree in target.parents or target in tree.parents


def _drop_links(root: Path, folders: list[Path], outside: bool) -> tuple[list[Path], list[Path]]:
    """(person folders to scan, links to folders not followed): never back into the tree; out of it if ``outside``."""
    tree = root.resolve()
    kept, dropped = [], []
    for folder in folders:
        if folder.is_symlink():
            target = folder.resolve()
            if _leads_into(target, tree) or not outside:
                dropped.append(folder)
                continue
        kept.append(folder)
    return kept, dropped


def _walk_person(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Images (recursively, sorted), non-image files and links to folders (not followed) of one person's folder."""
    images, other, links = [], [], []
    for here, dirs, names in os.walk(folder):
        visible = sorted(d for d in dirs if not d.startswith("."))
        links.extend(Path(here) / d for d in visible if os.path.islink(os.path.join(here, d)))
        dirs[:] = [d for d in visible if not os.path.islink(os.path.join(here, d))]
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(here) / name
            (images if is_image_name(path) else other).append(path)
    return sorted(images), other, links


def _read_metadata(path: Path, data: IdentityFolders) -> tuple[dict[str, dict[str, str]], int]:
    """Parse the metadata CSV: (relative path -> attributes, number of rows matching no image)."""
    rows = _metadata_rows(path)
    header = [h.strip() for h in rows[0][1]]
    lower = [h.lower() for h in header]
    name_col = next((c for c in NAME_COLUMNS if c in lower), None)
    if name_col is None:
        raise FacefitError(f"{path}:{rows[0][0]}: metadata needs a 'path' (relative to ROOT) or 'file' (file name) "
                           f"column naming each image; found {','.join(header)}")
    if len(set(lower)) != len(lower):
        raise FacefitError(f"{path}:{rows[0][0]}: duplicate column names in {','.join(header)}")
    key = lower.index(name_col)
    attr_cols = [(i, h) for i, h in enumerate(header) if lower[i] not in (*NAME_COLUMNS, *IGNORED_COLUMNS)]
    lookup = _by_relative_path(data) if name_col == "path" else _by_file_name(data, path)
    result: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    unmatched = 0
    for lineno, row in rows[1:]:
        if len(row) != len(header):
            raise FacefitError(f"{path}:{lineno}: expected {len(header)} fields as in the header, got {len(row)}")
        rel = lookup.get(_normalise(row[key]) if name_col == "path" else row[key].strip())
        if rel is None:
            unmatched += 1
            continue
        if rel in first_line:
            raise FacefitError(f"{path}:{lineno}: {rel} is already described on line {first_line[rel]}")
        first_line[rel] = lineno
        # An empty cell means "unknown", which must not become a subgroup of its own.
        result[rel] = {h: row[i].strip() for i, h in attr_cols if row[i].strip()}
    return result, unmatched


def _metadata_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with their line numbers; the first is the header."""
    if not path.is_file():
        raise FacefitError(f"{path}: no such metadata file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FacefitError(f"{path}: cannot read as text: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    rows = []
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise FacefitError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    if not rows:
        raise FacefitError(f"{path}:1: empty metadata file")
    return rows


def _normalise(rel: str) -> str:
    # Metadata written on Windows or with a leading "./" should still match.
    return PurePosixPath(rel.strip().replace("\\", "/")).as_posix()


def _by_relative_path(data: IdentityFolders) -> dict[str, str]:
    return {rel: rel for rel in map(data.relative, data.images())}


def _by_file_name(data: IdentityFolders, source: Path) -> dict[str, str]:
    """File name -> relative path; a name used twice cannot be matched by name alone."""
    lookup: dict[str, str] = {}
    for img in data.images():
        rel = data.relative(img)
        if img.name in lookup:
            raise FacefitError(f"{source}: its 'file' column names images by file name, but {img.name} occurs "
                               f"more than once ({lookup[img.name]}, {rel}); use a 'path' column relative to "
                               f"{data.root} instead")
        lookup[img.name] = rel
    return lookup
