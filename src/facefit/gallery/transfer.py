"""Moving a gallery between machines or backends: one zip file, readable without facefit.

Layout: ``manifest.json`` (format, model contract, counts), ``faces.jsonl``
(one face per line, in the row order of ``embeddings.npy``), ``persons.jsonl``
(each person's created and updated times) and ``crops/<n>.jpg``. Importing
merges by person name and skips faces already stored (same image and box), so
importing twice changes nothing; every stored field, times included, is kept.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facefit.gallery.gallery import Gallery
from facefit.gallery.records import NewFace
from facefit.gallery.store import ContractMismatchError, GalleryError

if TYPE_CHECKING:
    from facefit.models.contract import EmbeddingContract

FORMAT = "facefit-gallery"
VERSION = 1
# What every face record needs; crop, landmarks and crop_box are optional (faces enrolled without crops).
REQUIRED = ("person", "image_sha256", "source", "box", "det_score", "face_px", "sharpness", "detector")
METRICS = ("euclidean", "cosine")  # the metrics gallery search serves
CROP_LIMIT = 8 << 20  # loose crops are JPEGs of at most 320 px a side; anything this big is not one


def export_gallery(gallery: Gallery, path: str | os.PathLike) -> int:
    """Write every person, face, embedding and crop to a zip; returns the number of faces."""
    from facefit.io.files import atomic_path, writing

    contract = gallery.store.contract_json()
    if contract is None:
        raise GalleryError(f"the gallery {gallery.location} is empty: nothing to export")
    records = gallery.faces()
    ids, _, emb = gallery.store.vectors()
    row = {int(i): k for k, i in enumerate(ids)}
    crops = {c.face_id: c for c in gallery.store.crops()}
    lines = []
    with writing(path), atomic_path(path, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        order = []
        for n, r in enumerate(records):
            crop = crops.get(r.id)
            entry = {"person": r.person, "image_sha256": r.image_sha256, "source": r.source, "box": list(r.box),
                     "det_score": r.det_score, "face_px": r.face_px, "sharpness": r.sharpness,
                     "detector": r.detector, "created": r.created, "crop": None}
            if crop is not None and crop.jpeg is not None:
                entry["crop"] = f"crops/{n}.jpg"
                entry["landmarks"] = crop.landmarks.round(3).tolist()
                entry["crop_box"] = None if crop.box is None else [round(v, 3) for v in crop.box]
                if crop.points:
                    entry["points"] = crop.points
                z.writestr(entry["crop"], crop.jpeg, compress_type=zipfile.ZIP_STORED)
            lines.append(json.dumps(entry))
            order.append(row[r.id])
        buf = io.BytesIO()
        np.save(buf, emb[order] if order else emb)
        z.writestr("embeddings.npy", buf.getvalue())
        z.writestr("faces.jsonl", "\n".join(lines) + "\n")
        z.writestr("persons.jsonl", "".join(json.dumps({"name": p.name, "created": p.created, "updated": p.updated})
                                            + "\n" for p in gallery.persons()))
        n_persons = len({r.person for r in records})
        z.writestr("manifest.json", json.dumps({"format": FORMAT, "version": VERSION, "contract": json.loads(contract),
                                                "persons": n_persons, "faces": len(records),
                                                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
    return len(records)


def _member(z: zipfile.ZipFile, name: str, path: Path, limit: int | None = None) -> bytes:
    """One file of the archive; a missing, oversized or corrupt member is a one-line error."""
    try:
        info = z.getinfo(name)
        if limit is not None and info.file_size > limit:
            raise GalleryError(f"{path}: {name} is {info.file_size} bytes, more than a facefit export holds")
        return z.read(info)
    except KeyError:
        raise GalleryError(f"{path}: {name} is missing from the archive") from None
    # zlib.error, NotImplementedError (compression) and RuntimeError (encryption) come from a tampered member.
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise GalleryError(f"{path}: {name} cannot be read ({exc}); the file is damaged") from None


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise GalleryError(f"{path}: not a readable facefit gallery export ({exc})") from None


def _read(path: Path, z: zipfile.ZipFile) -> tuple[dict, list[dict], np.ndarray]:
    """Manifest, face records and embeddings, each checked for shape (not yet for content)."""
    try:
        manifest = json.loads(_member(z, "manifest.json", path))
    except ValueError as exc:
        raise GalleryError(f"{path}: not a readable facefit gallery export (manifest.json: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalleryError(f"{path}: not a facefit gallery export")
    version = manifest.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise GalleryError(f"{path}: the manifest's version {version!r} is not a whole number")
    if version > VERSION:
        raise GalleryError(f"{path}: export format {version} is newer than this facefit reads")
    try:
        text = _member(z, "faces.jsonl", path).decode()
    except UnicodeDecodeError:
        raise GalleryError(f"{path}: faces.jsonl is not UTF-8 text; the file is damaged") from None
    faces = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise GalleryError(f"{path}: faces.jsonl line {n} is not JSON ({exc})") from None
        if not isinstance(entry, dict):
            raise GalleryError(f"{path}: faces.jsonl line {n} is not a face record")
        faces.append(entry)
    try:
        emb = np.load(io.BytesIO(_member(z, "embeddings.npy", path)), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise GalleryError(f"{path}: embeddings.npy is not a readable array ({exc})") from None
    if emb.ndim != 2 or not (np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)):
        raise GalleryError(f"{path}: embeddings.npy holds a {emb.dtype} array of shape {emb.shape}, "
                           f"not one row of numbers per face")
    if len(faces) != len(emb):
        raise GalleryError(f"{path}: {len(faces)} faces but {len(emb)} embeddings; the file is damaged")
    count = manifest.get("faces")
    if isinstance(count, int) and count != len(faces):
        raise GalleryError(f"{path}: the manifest lists {count} faces but faces.jsonl has {len(faces)}; "
                           f"the file is damaged")
    return manifest, faces, emb


def _person_times(path: Path, z: zipfile.ZipFile) -> dict[str, tuple[float, float]]:
    """Each person's (created, updated) from ``persons.jsonl``; exports written before it existed have none."""
    from facefit.gallery.store import check_name

    if "persons.jsonl" not in z.namelist():
        return {}
    try:
        text = _member(z, "persons.jsonl", path).decode()
    except UnicodeDecodeError:
        raise GalleryError(f"{path}: persons.jsonl is not UTF-8 text; the file is damaged") from None
    times = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise GalleryError(f"{path}: persons.jsonl line {n} is not JSON ({exc})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise GalleryError(f"{path}: persons.jsonl line {n} is not a person record")
        created, updated = _number(entry.get("created")), _number(entry.get("updated"))
        if created is None or updated is None:
            raise GalleryError(f"{path}: persons.jsonl line {n}: created and updated must be finite numbers")
        try:
            times[check_name(entry["name"])] = (created, updated)
        except GalleryError as exc:
            raise GalleryError(f"{path}: persons.jsonl line {n}: {exc}") from None
    return times


def _contract(path: Path, manifest: dict) -> EmbeddingContract:
    """The export's model contract, refused unless it is whole and its id matches its fields."""
    from facefit.models.contract import EmbeddingContract

    data = manifest.get("contract")
    if not isinstance(data, dict):
        raise GalleryError(f"{path}: the manifest has no model contract; the file is damaged")
    try:
        contract = EmbeddingContract.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise GalleryError(f"{path}: the manifest's model contract is unusable ({reason})") from None
    # Fields outside the id are not checked by it, but search and thresholds read them later.
    dim = contract.embedding_dim
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise GalleryError(f"{path}: the model contract's embedding_dim {dim!r} is not a positive whole number")
    if contract.distance not in METRICS:
        raise GalleryError(f"{path}: the model contract's metric {contract.distance!r} is not one of "
                           f"{', '.join(METRICS)}")
    if not isinstance(contract.thresholds, dict) or not all(
            isinstance(k, str) and _number(v) is not None for k, v in contract.thresholds.items()):
        raise GalleryError(f"{path}: the model contract's thresholds are not a table of numbers")
    return contract


def _number(value: object) -> float | None:
    """A finite JSON number as float, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _numbers(value: object, shape: tuple[int, ...]) -> np.ndarray | None:
    """A (nested) JSON list of finite numbers of exactly ``shape``, else None."""
    if not isinstance(value, list):
        return None
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):  # ragged lists
        return None
    if arr.shape != shape or arr.dtype.kind not in "iuf":  # not text, booleans or huge integers (object)
        return None
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)
    return arr if np.isfinite(arr).all() else None


def _face(path: Path, z: zipfile.ZipFile, names: set[str], n: int, entry: dict, embedding: np.ndarray,
          contract: EmbeddingContract) -> tuple[str, NewFace]:
    """One face record checked field by field: (person, face), or a GalleryError naming the face."""
    from facefit.errors import FacefitError
    from facefit.gallery.enrol import decode_crop
    from facefit.gallery.store import check_name

    person = entry.get("person")
    where = f"{path}: face {n}" + (f" (person {person!r})" if isinstance(person, str) else "")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise GalleryError(f"{where}: the record has no {', '.join(missing)}")
    if not isinstance(person, str):
        raise GalleryError(f"{where}: the person's name is not text")
    try:
        person = check_name(person)
    except GalleryError as exc:
        raise GalleryError(f"{where}: {exc}") from None
    for key in ("image_sha256", "source", "detector"):
        if not isinstance(entry[key], str):
            raise GalleryError(f"{where}: {key} is not text")
    if not entry["image_sha256"]:
        raise GalleryError(f"{where}: image_sha256 is empty")
    box = _numbers(entry["box"], (4,))
    if box is None:
        raise GalleryError(f"{where}: box is not 4 finite numbers")
    quality = {k: _number(entry[k]) for k in ("det_score", "face_px", "sharpness")}
    bad = [k for k, v in quality.items() if v is None]
    if bad:
        raise GalleryError(f"{where}: {', '.join(bad)} is not a finite number")
    created = None if entry.get("created") is None else _number(entry["created"])  # older exports: absent
    if entry.get("created") is not None and created is None:
        raise GalleryError(f"{where}: created is not a finite number")

    if len(embedding) != contract.embedding_dim:
        raise GalleryError(f"{where}: embedding has {len(embedding)} values, the contract's model gives "
                           f"{contract.embedding_dim}")
    with np.errstate(over="ignore", invalid="ignore"):
        vector = embedding.astype(np.float32)  # float64 beyond float32's range becomes inf: caught below
    if not np.isfinite(vector).all():
        raise GalleryError(f"{where}: embedding has values that are not finite numbers (NaN or infinity)")
    if not vector.any():
        raise GalleryError(f"{where}: embedding is all zeros, which no model produces")

    jpeg = crop_box = None
    landmarks = np.zeros((5, 2), np.float32)
    name = entry.get("crop")
    if name is not None:
        if not isinstance(name, str):
            raise GalleryError(f"{where}: crop is not a file name")
        if name not in names:
            raise GalleryError(f"{where}: its crop {name} is missing from the archive")
        jpeg = _member(z, name, path, limit=CROP_LIMIT)
        try:
            decode_crop(jpeg)  # the same decoder reembed uses, so what is stored can be re-embedded
        except FacefitError:
            raise GalleryError(f"{where}: its crop {name} is not a readable image") from None
        lm = _numbers(entry.get("landmarks"), (5, 2))
        if lm is None:
            raise GalleryError(f"{where}: landmarks are not 5 pairs of finite numbers")
        landmarks = lm.astype(np.float32)
        if entry.get("crop_box") is not None:
            cb = _numbers(entry["crop_box"], (4,))
            if cb is None:
                raise GalleryError(f"{where}: crop_box is not 4 finite numbers")
            crop_box = tuple(float(v) for v in cb)
    return person, NewFace(entry["image_sha256"], entry["source"], tuple(float(v) for v in box), vector, landmarks,
                           jpeg, crop_box, quality["det_score"], quality["face_px"], quality["sharpness"],
                           entry["detector"], created, _points(entry, where))


def import_gallery(gallery: Gallery, path: str | os.PathLike) -> tuple[int, int]:
    """Merge an export into ``gallery``; returns (faces added, duplicates skipped).

    Every face is checked before anything is written: a damaged or tampered archive is refused whole,
    with the first problem, and the gallery is left as it was.
    """
    p = Path(path)
    if not p.is_file():
        raise GalleryError(f"{p}: no such file")
    with _open(p) as z:
        manifest, faces, emb = _read(p, z)
        contract = _contract(p, manifest)
        current = gallery.contract
        if current is not None and current.id != contract.id:
            raise ContractMismatchError(f"{p} holds embeddings of {contract.id}, the gallery {gallery.location} of "
                                        f"{current.id}; re-embed one of them so both use the same model")
        by_person: dict[str, list[NewFace]] = defaultdict(list)
        names = set(z.namelist())
        for n, (entry, e) in enumerate(zip(faces, emb), 1):
            person, face = _face(p, z, names, n, entry, e, contract)
            by_person[person].append(face)
        times = _person_times(p, z)
    added = dups = 0
    for person, items in by_person.items():
        outcome = gallery.store.add_faces(person, items, contract.to_json(), contract.id,
                                          person_times=times.get(person))
        added += len(outcome.added)
        dups += len(outcome.duplicates)
    return added, dups


def _points(entry: dict, where: str) -> str:
    """A face's landmark kind from an export: absent in exports made before kinds were recorded."""
    from facefit.align.aligner import POINT_FAMILIES

    points = entry.get("points") or ""
    if points and points not in POINT_FAMILIES:
        raise GalleryError(f"{where}: unknown landmark kind {points!r} (expected one of {', '.join(POINT_FAMILIES)})")
    return points
