"""Enrolment and 1:N identification on real LFW faces; re-embedding; export and import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.engine import FaceEngine
from facefit.gallery.gallery import Gallery
from facefit.gallery.store import ContractMismatchError, GalleryError
from facefit.gallery.transfer import export_gallery, import_gallery

ENROLLED = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Silvio_Berlusconi")
STRANGERS = ("Jean_Chretien", "Hans_Blix")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, lfw_people, model) -> tuple[Path, dict]:
    """A gallery of 4 persons x 3 photos, and probe embeddings (other photos, plus 2 strangers)."""
    path = tmp_path_factory.mktemp("gallery") / "g.sqlite"
    with Gallery.open(path) as g:
        for name in ENROLLED:
            report = g.add(name, lfw_people[name][:3], model)
            assert len(report.added) == 3, report.failures
    probes = {name: lfw_people[name][4:7] for name in ENROLLED + STRANGERS}
    files = [p for ps in probes.values() for p in ps]
    emb = FaceEngine(model, faces="largest").embed_files(files)
    assert not emb.failures
    truth = [Path(p).parent.name for p in emb.paths]
    return path, {"emb": emb.embeddings, "truth": truth}


def test_enrolled_people_are_found_and_strangers_mostly_rejected(built, model) -> None:
    path, probes = built
    with Gallery.open(path) as g:
        answers = g.identify(probes["emb"], model)
    known = [(t, a.name) for t, a in zip(probes["truth"], answers) if t in ENROLLED]
    strangers = [a.name for t, a in zip(probes["truth"], answers) if t in STRANGERS]
    assert all(t == name for t, name in known), known
    assert sum(name is None for name in strangers) >= len(strangers) - 1, strangers
    assert all(a.threshold == 0.6 for a in answers)  # dlib's own operating point by default


def test_mean_template_and_hnsw_agree_with_best_exact(built, model) -> None:
    from facefit.gallery.search import SearchSettings

    path, probes = built
    known = [i for i, t in enumerate(probes["truth"]) if t in ENROLLED]
    for settings in (SearchSettings(), SearchSettings(aggregation="mean"), SearchSettings(index="hnsw")):
        with Gallery.open(path, settings=settings) as g:
            names = [m[0].name for m in g.index().top_persons(probes["emb"][known], 1)]
        assert names == [probes["truth"][i] for i in known], settings


def test_duplicates_multi_face_photos_and_bad_files(tmp_path: Path, lfw_people, data_root: Path, model) -> None:
    group = data_root / "lfw" / "images" / "Abdullah_Gul" / "Abdullah_Gul_0008.jpg"  # three faces
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with Gallery.open(tmp_path / "g.sqlite") as g:
        first = g.add("Bush", lfw_people["George_W_Bush"][:2], model)
        report = g.add("Bush", [lfw_people["George_W_Bush"][0], group, bad, lfw_people["George_W_Bush"][2]], model)
        assert [d[1] for d in report.duplicates] == ["Bush"] and len(first.added) == 2
        reasons = dict(report.failures)
        assert "3 faces found" in reasons[str(group)] and "--face" in reasons[str(group)]
        assert str(bad) in reasons
        assert len(report.added) == 1
        chosen = g.add("Gul", [group], model, face="largest")
        assert len(chosen.added) == 1
        assert [(p.name, p.n_faces) for p in g.persons()] == [("Bush", 3), ("Gul", 1)]


def test_reembed_from_crops_reproduces_the_embeddings(built, tmp_path: Path, model) -> None:
    import shutil

    path = tmp_path / "copy.sqlite"
    shutil.copy(built[0], path)
    with Gallery.open(path) as g:
        _, _, before = g.store.vectors()
        assert g.reembed(model) == 12
        _, _, after = g.store.vectors()
    # Re-cut from the stored loose crops (JPEG, <= 320 px): the same faces, within a small distance.
    drift = np.linalg.norm(before - after, axis=1)
    assert drift.max() < 0.12, drift
    assert drift.mean() < 0.06, drift
    with Gallery.open(path) as g:  # a damaged crop is named, and nothing is swapped
        face_id = g.store.db.execute("SELECT MAX(face_id) FROM facefit_crops").fetchone()[0]
        g.store.db.execute("UPDATE facefit_crops SET jpeg = ? WHERE face_id = ?", (b"\xff\xd8 damaged", face_id))
        with pytest.raises(GalleryError, match=f"face {face_id}: a stored face crop is damaged.*--face {face_id}"):
            g.reembed(model)
        np.testing.assert_array_equal(g.store.vectors()[2], after)


def test_reembedding_twice_across_landmark_kinds_keeps_the_crops_meaning(built, tmp_path: Path, model) -> None:
    """dlib's faces carry sp5 points; re-embedded for SFace (YuNet points) and again for SFace, the second
    pass must still read the stored points as sp5, not as the gallery's current model's kind."""
    import json
    import shutil

    from facefit.models import create_model

    path = tmp_path / "copy.sqlite"
    shutil.copy(built[0], path)
    sface = create_model("sface")
    with Gallery.open(path) as g:
        kinds = {json.loads(r[0]).get("points") for r in g.store.db.execute("SELECT geometry FROM facefit_crops")}
        assert kinds == {"sp5"}  # recorded at enrolment
        assert g.reembed(sface) == 12
        _, _, first = g.store.vectors()
        assert g.reembed(sface) == 12
        _, _, second = g.store.vectors()
    np.testing.assert_allclose(second, first, atol=1e-5)


def test_another_model_is_refused_until_reembedded(built, tmp_path: Path, model) -> None:
    import shutil

    import torch

    from facefit.models import create_model

    path = tmp_path / "copy.sqlite"
    shutil.copy(built[0], path)
    torch.manual_seed(0)
    other = create_model("dlib-resnet", pretrained=False)
    with Gallery.open(path) as g:
        with pytest.raises(ContractMismatchError, match="reembed"):
            g.identify(np.zeros((1, 128), np.float32), other, threshold=0.5)
        g.reembed(other)
        assert g.contract.id == other.contract.id
        with pytest.raises(ContractMismatchError):
            g.identify(np.zeros((1, 128), np.float32), model)


def test_export_import_round_trip(built, tmp_path: Path, model) -> None:
    path, probes = built
    zip_path = tmp_path / "g.zip"
    with Gallery.open(path) as g:
        assert export_gallery(g, zip_path) == 12
        want = [a.name for a in g.identify(probes["emb"], model)]
    with Gallery.open(tmp_path / "copy.sqlite") as copy:
        assert import_gallery(copy, zip_path) == (12, 0)
        assert import_gallery(copy, zip_path) == (0, 12)  # importing twice changes nothing
        assert [a.name for a in copy.identify(probes["emb"], model)] == want
        assert all(f.has_crop for f in copy.faces())
