"""Moving a gallery between machines or backends: one zip file, readable without facefit.

Layout: ``manifest.json`` (format, model contract, counts), ``faces.jsonl``
(one face per line, in the row order of ``embeddings.npy``) and
``crops/<n>.jpg``. Importing merges by person name and skips faces already
stored (same image and box), so importing twice changes nothing.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from facefit.gallery.gallery import Gallery
from facefit.gallery.records import NewFace
from facefit.gallery.store import ContractMismatchError, GalleryError

FORMAT = "facefit-gallery"
VERSION = 1


def export_gallery(gallery: Gallery, path: str | os.PathLike) -> int:
    """Write every person, face, embedding and crop to a zip; returns the number of faces."""
    from facefit.io.files import atomic_path

    contract = gallery.store.contract_json()
    if contract is None:
        raise GalleryError(f"the gallery {gallery.location} is empty: nothing to export")
    records = gallery.faces()
    ids, _, emb = gallery.store.vectors()
    row = {int(i): k for k, i in enumerate(ids)}
    crops = {c.face_id: c for c in gallery.store.crops()}
    lines = []
    with atomic_path(path, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
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
                z.writestr(entry["crop"], crop.jpeg, compress_type=zipfile.ZIP_STORED)
            lines.append(json.dumps(entry))
            order.append(row[r.id])
        buf = io.BytesIO()
        np.save(buf, emb[order] if order else emb)
        z.writestr("embeddings.npy", buf.getvalue())
        z.writestr("faces.jsonl", "\n".join(lines) + "\n")
        n_persons = len({r.person for r in records})
        z.writestr("manifest.json", json.dumps({"format": FORMAT, "version": VERSION, "contract": json.loads(contract),
                                                "persons": n_persons, "faces": len(records),
                                                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
    return len(records)


def _read(path: Path) -> tuple[dict, list[dict], np.ndarray, zipfile.ZipFile]:
    try:
        z = zipfile.ZipFile(path)
        manifest = json.loads(z.read("manifest.json"))
        if manifest.get("format") != FORMAT:
            raise GalleryError(f"{path}: not a facefit gallery export")
        if int(manifest.get("version", 0)) > VERSION:
            raise GalleryError(f"{path}: export format {manifest['version']} is newer than this facefit reads")
        faces = [json.loads(line) for line in z.read("faces.jsonl").decode().splitlines() if line.strip()]
        emb = np.load(io.BytesIO(z.read("embeddings.npy")), allow_pickle=False)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise GalleryError(f"{path}: not a readable facefit gallery export ({exc})") from None
    if len(faces) != len(emb):
        raise GalleryError(f"{path}: {len(faces)} faces but {len(emb)} embeddings; the file is damaged")
    return manifest, faces, emb, z


def import_gallery(gallery: Gallery, path: str | os.PathLike) -> tuple[int, int]:
    """Merge an export into ``gallery``; returns (faces added, duplicates skipped)."""
    from facefit.models.contract import EmbeddingContract

    p = Path(path)
    if not p.is_file():
        raise GalleryError(f"{p}: no such file")
    manifest, faces, emb, z = _read(p)
    with z:
        contract = EmbeddingContract.from_dict(manifest["contract"])
        current = gallery.contract
        if current is not None and current.id != contract.id:
            raise ContractMismatchError(f"{p} holds embeddings of {contract.id}, the gallery {gallery.location} of "
                                        f"{current.id}; re-embed one of them so both use the same model")
        by_person: dict[str, list[NewFace]] = defaultdict(list)
        for entry, e in zip(faces, emb):
            jpeg = z.read(entry["crop"]) if entry.get("crop") else None
            lm = np.asarray(entry.get("landmarks", np.zeros((5, 2))), np.float32)
            crop_box = tuple(entry["crop_box"]) if entry.get("crop_box") else None
            by_person[entry["person"]].append(NewFace(
                entry["image_sha256"], entry["source"], tuple(entry["box"]), np.asarray(e, np.float32), lm, jpeg,
                crop_box, entry["det_score"], entry["face_px"], entry["sharpness"], entry["detector"]))
    added = dups = 0
    for person, items in by_person.items():
        outcome = gallery.store.add_faces(person, items, contract.to_json(), contract.id)
        added += len(outcome.added)
        dups += len(outcome.duplicates)
    return added, dups
