"""``Gallery``: a store bound to a model contract, with enrolment, 1:N search and re-embedding."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from facefit.errors import FacefitError
from facefit.gallery.enrol import Prepared
from facefit.gallery.records import FaceRecord, Identification, PersonSummary
from facefit.gallery.search import PersonIndex, SearchSettings, open_person_index
from facefit.gallery.store import ContractMismatchError, GalleryError, GalleryStore
from facefit.io.images import ImageBytes
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract


@dataclass
class EnrolReport:
    added: list[tuple[str, str, int]] = field(default_factory=list)  # (path, person, face id)
    duplicates: list[tuple[str, str, int]] = field(default_factory=list)  # (path, already enrolled as, face id)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: list[str] = field(default_factory=list)  # non-image files passed over in folders

    def extend(self, other: EnrolReport) -> None:
        self.added += other.added
        self.duplicates += other.duplicates
        self.failures += other.failures
        self.skipped += other.skipped


class Gallery:
    """Persons and their face embeddings, searchable by face; one model contract at a time."""

    def __init__(self, store: GalleryStore, settings: SearchSettings | None = None) -> None:
        self.store = store
        self.settings = settings or SearchSettings()
        self._index: tuple[tuple, PersonIndex] | None = None

    @classmethod
    def open(cls, location: str | os.PathLike | None = None, *, create: bool = True,
             settings: SearchSettings | None = None) -> Gallery:
        """Open (or create) the gallery at ``location`` (see ``facefit.gallery.location``)."""
        from facefit.gallery.location import open_store, resolve_location

        return cls(open_store(resolve_location(location), create=create), settings)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        return self.store.location

    # -- model binding -----------------------------------------------------------------------------
    @property
    def contract(self) -> EmbeddingContract | None:
        text = self.store.contract_json()
        return None if text is None else EmbeddingContract.from_json(text)

    def check_model(self, model: FaceEmbedder) -> None:
        """Refuse a model whose embeddings differ from the stored ones."""
        current = self.contract
        if current is not None and current.id != model.contract.id:
            raise ContractMismatchError(
                f"the gallery {self.location} holds embeddings of {current.name or current.architecture} "
                f"({current.id}), not of this model ({model.contract.id}); use that model or run "
                f"'facefit gallery reembed --model MODEL' first")

    @property
    def metric(self) -> str:
        current = self.contract
        return "euclidean" if current is None else current.distance

    def default_threshold(self) -> float:
        """The stored model's own 1:N operating point (dlib-resnet: 0.6; fine-tuned: FAR 1e-3 on its validation)."""
        current = self.contract
        value = None if current is None else current.identification_threshold()[0]
        if value is None:
            raise GalleryError("this model carries no 1:N threshold of its own; give a threshold, or the "
                               "metrics.json of an evaluation of this model to take its calibrated one")
        return float(value)

    # -- enrolment ---------------------------------------------------------------------------------
    def add(self, name: str, images: Sequence[str | os.PathLike | ImageBytes], model: FaceEmbedder, *,
            detector: str | None = None, face: str | int | None = None, keep_crops: bool = True,
            on_image: Callable[[], None] | None = None) -> EnrolReport:
        """Enrol one face from each photo (file or ``ImageBytes``) for ``name``, in one transaction.

        Duplicates (the same image bytes and face) are not stored twice.
        """
        from facefit.gallery.enrol import prepare_faces
        from facefit.gallery.store import check_name

        if isinstance(images, str | os.PathLike | ImageBytes):  # one photo, not a sequence of characters
            images = [images]
        name = check_name(name)
        self.check_model(model)
        from facefit.engine import FaceEngine

        prepared = prepare_faces(images, FaceEngine(model, detector=detector), choice=face, keep_crops=keep_crops,
                                 on_image=on_image)
        return self.add_prepared(name, prepared, model)

    def add_prepared(self, name: str, prepared: Prepared, model: FaceEmbedder) -> EnrolReport:
        """Store faces made by ``prepare_faces`` for ``name`` in one transaction: the database part of ``add``.

        Kept apart so a server can detect and embed on its request threads and write on the gallery's.
        """
        from facefit.gallery.store import check_name

        name = check_name(name)
        report = EnrolReport(failures=list(prepared.failures))
        if prepared.faces:
            outcome = self.store.add_faces(name, prepared.faces, model.contract.to_json(), model.contract.id)
            dup = {id(d[0]) for d in outcome.duplicates}
            added = [f for f in prepared.faces if id(f) not in dup]
            report.added = [(f.source, name, fid) for f, fid in zip(added, outcome.added)]
            report.duplicates = [(f.source, who, fid) for f, who, fid in outcome.duplicates]
        return report

    def add_folder(self, root: str | os.PathLike, model: FaceEmbedder, *, detector: str | None = None,
                   face: str | int | None = None, keep_crops: bool = True,
                   on_image: Callable[[], None] | None = None) -> EnrolReport:
        """Enrol ``ROOT/<person>/<images>``: one transaction per person, so a killed run keeps whole persons."""
        from facefit.data.folders import IdentityFolders
        from facefit.gallery.store import check_name
        from facefit.io.files import BAD_NAME, shown

        data = IdentityFolders.scan(root, outside_links=False)  # links out of, or into, the tree: not followed
        self.check_model(model)
        report = EnrolReport(skipped=[str(p) for p in data.skipped],
                             failures=[(shown(p), BAD_NAME) for p in data.bad_names])
        for person in data.persons:
            try:
                check_name(person.name)
            except GalleryError as exc:  # a folder whose name cannot be a person's: say so, enrol the others
                report.failures.append((shown(data.root / person.name), str(exc)))
                continue
            report.extend(self.add(person.name, person.images, model, detector=detector, face=face,
                                   keep_crops=keep_crops, on_image=on_image))
        return report

    # -- reading and editing -----------------------------------------------------------------------
    def persons(self) -> list[PersonSummary]:
        return self.store.persons()

    def faces(self, person: str | None = None) -> list[FaceRecord]:
        return self.store.faces(person)

    def rename(self, old: str, new: str) -> None:
        self.store.rename(old, new)

    def remove(self, name: str) -> int:
        """Forget a person: their faces, crops and every copy facefit keeps of them (see ``_erased``)."""
        with self._erasing():
            return self.store.remove_person(name)

    def remove_face(self, face_id: int) -> str:
        with self._erasing():
            return self.store.remove_face(face_id)

    @contextmanager
    def _erasing(self) -> Iterator[None]:
        """Erase the copies once the block changed the gallery, even when it then failed (a removal whose
        WAL could not be truncated is committed all the same); an unknown name changes nothing."""
        before = self.store.revision()
        try:
            yield
        finally:
            if self.store.revision() != before:
                self._erased()

    def erase_removed(self) -> None:
        """Take removed faces out of the database's files where removal alone does not (PostgreSQL: VACUUM FULL).

        A SQLite gallery needs nothing: its removals overwrite the rows and truncate the WAL at once.
        """
        self.store.erase_removed()

    @property
    def erased_on_removal(self) -> bool:
        """Whether ``remove`` alone leaves nothing of the removed faces in the gallery's files."""
        return bool(getattr(self.store, "erased_on_removal", True))

    def _erased(self) -> None:
        """After a removal: the store has overwritten the rows (SQLite: secure_delete, WAL truncated); the
        search index and its cache file beside the gallery hold the vectors and names too. The index is
        updated now, which takes the removed faces out of it and overwrites the old cache file (see
        ``search.open_person_index``); when it cannot be, the cache file is erased and the next search
        rebuilds it."""
        from facefit.gallery.search import erase_cache, erase_leftovers

        self._index = None
        try:
            if self.contract is not None and self.store.counts()[1] > 0:
                self.index()
                erase_leftovers(self.store)
                return
        except FacefitError:
            pass  # e.g. faiss missing: the next search says so; the copies are erased all the same
        erase_cache(self.store)

    # -- search ------------------------------------------------------------------------------------
    def index(self) -> PersonIndex:
        current = self.contract
        if current is None:
            raise GalleryError(f"the gallery {self.location} is empty; enrol someone first "
                               f"(facefit gallery add NAME IMAGE)")
        key = (self.store.revision(), current.id, self.settings)
        if self._index is None or self._index[0] != key:
            self._index = (key, open_person_index(self.store, current.id, current.distance, self.settings))
        return self._index[1]

    def identify(self, embeddings: np.ndarray, model: FaceEmbedder, *, threshold: float | None = None,
                 top_k: int = 5) -> list[Identification]:
        """Open-set identification of embeddings made by ``model``; ``threshold`` defaults to the model's own."""
        import numbers

        from facefit.distances import is_threshold

        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise GalleryError(f"top_k must be a whole number >= 1, got {top_k!r}")
        if threshold is not None and not is_threshold(threshold):
            raise GalleryError(f"threshold must be a distance above 0, got {threshold!r}")
        self.check_model(model)
        index = self.index()
        if threshold is None:
            threshold = self.default_threshold()
        return index.identify(embeddings, threshold, top_k)

    # -- model change ------------------------------------------------------------------------------
    def reembed(self, model: FaceEmbedder, *, on_face: Callable[[], None] | None = None,
                batch_size: int = 64) -> int:
        """Re-cut every face from its stored crop for ``model`` and swap all embeddings at once."""
        from facefit.align.aligner import points_family
        from facefit.engine import FaceEngine
        from facefit.gallery.enrol import decode_crop

        engine = FaceEngine(model, batch_size=batch_size)
        # Crops record their landmarks' kind; older ones were cut with the gallery's model of the time.
        legacy = points_family(self.contract.align if self.contract is not None else model.contract.align)
        ids, views, missing = [], [], []
        with engine.aligner() as aligner:
            for crop in self.store.crops():
                if crop.jpeg is None or crop.landmarks is None or crop.box is None:
                    missing.append(crop.face_id)
                    continue
                try:
                    image = decode_crop(crop.jpeg)
                except FacefitError as exc:
                    raise GalleryError(f"face {crop.face_id}: {exc}; remove it (facefit gallery remove --face "
                                       f"{crop.face_id} --yes), then re-embed") from None
                # Landmarks of the kind this model's recipes need are used as stored; another kind is found anew.
                views.append(aligner.cut_views(image, crop.box, crop.landmarks, family=crop.points or legacy))
                ids.append(crop.face_id)
                if on_face is not None:
                    on_face()
        if missing:
            shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise GalleryError(f"{len(missing)} face(s) were enrolled without a stored crop (ids {shown}); remove "
                               f"and re-enrol them from photos before re-embedding")
        dim = model.embedding_dim
        emb = model.embed_views({r: np.stack([v[r] for v in views]) for r in model.recipes}, batch_size=batch_size) \
            if views else np.empty((0, dim), np.float32)
        self.store.replace_embeddings(model.contract.to_json(), model.contract.id, np.asarray(ids, np.int64), emb)
        return len(ids)


def gallery_model(gallery: Gallery, model: str | None) -> FaceEmbedder:
    """The model to embed with: the one asked for, else the one the gallery's embeddings were made with."""
    from facefit.defaults import default_model
    from facefit.errors import FacefitError, UsageError
    from facefit.models import create_model

    if model is not None:
        return create_model(model)
    contract = gallery.contract
    if contract is None:
        return create_model(default_model())
    for ref in (gallery.store.model_ref(), contract.name):
        if not ref:
            continue
        try:
            net = create_model(ref)
        except FacefitError:
            continue  # moved or deleted since: the error below says what to do
        if net.contract.id == contract.id:
            return net
    raise UsageError(f"the gallery's embeddings were made with {contract.name or contract.architecture} "
                     f"({contract.id}); pass that model with --model PATH (or ARCH=PATH for another project's "
                     f"checkpoint)")
