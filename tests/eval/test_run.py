"""Evaluation runs on real LFW faces: cached pipeline, fallback for no-face images, options, reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit import create_model, detect_and_align, save_model
from facefit.data.pairs import PairsError, read_pairs
from facefit.distances import paired_distances
from facefit.eval.calibration import load_calibration
from facefit.eval.metrics import verification_metrics
from facefit.eval.report import metrics_doc, write_report
from facefit.eval.run import EvalOptions, evaluate
from facefit.io import load_image
from facefit.io.cache import EvalCache


@pytest.fixture(scope="module")
def lfw_small(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The official protocol cut down: 2 folds x (20 same + 20 different) pairs from pairs.txt."""
    lines = (data_root / "lfw" / "pairs.txt").read_text().splitlines()[1:]
    keep = []
    for fold in range(2):
        block = lines[fold * 600 : (fold + 1) * 600]
        keep += block[:20] + block[300:320]
    path = tmp_path_factory.mktemp("lfw") / "pairs.txt"
    path.write_text("2\t20\n" + "\n".join(keep) + "\n")
    return path, data_root / "lfw" / "images"


@pytest.fixture(scope="module")
def copy_model(tmp_path_factory: pytest.TempPathFactory):
    """The same weights saved as a model folder: another contract id, so it must be re-embedded."""
    return create_model(save_model(create_model("dlib-resnet"), tmp_path_factory.mktemp("m") / "copy"))


def test_run_matches_direct_embedding_and_caches(lfw_small, model, copy_model, tmp_path: Path) -> None:
    pairs_file, root = lfw_small
    pairs = read_pairs(pairs_file, root)
    assert len(pairs) == 80
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        first = evaluate(pairs, [("dlib", model)], EvalOptions(workers=2), cache)
        n_images = len(pairs.images())
        assert first.detected_now == n_images and first.models[0].embedded_now == n_images
        m = first.models[0]
        # Distances equal embedding the detected, aligned faces directly.
        for p, d in list(zip(pairs.pairs, m.distances))[:6]:
            ea, eb = (model.embed(detect_and_align(load_image(x), faces="center")[0].chip[None])[0] for x in (p.a, p.b))
            assert abs(np.linalg.norm(ea - eb) - d) < 1e-4
        same = np.array([p.same for p in pairs.pairs])
        folds = np.array([p.fold for p in pairs.pairs])
        direct = verification_metrics(-m.distances, same, folds)
        assert m.total["accuracy"] == direct["accuracy"] and m.total["auc"] == direct["auc"]
        assert m.total["threshold"] == pytest.approx(-direct["threshold"])  # reported as a distance
        assert m.total["accuracy"] > 0.9 and m.total["auc"] > 0.97

        again = evaluate(pairs, [("dlib", model)], EvalOptions(workers=2), cache)
        assert again.detected_now == 0 and again.models[0].embedded_now == 0
        np.testing.assert_array_equal(again.models[0].distances, m.distances)

        other = evaluate(pairs, [("dlib", model), ("copy", copy_model)], EvalOptions(workers=2), cache)
        assert other.detected_now == 0
        assert other.models[0].embedded_now == 0 and other.models[1].embedded_now == n_images
        np.testing.assert_allclose(other.models[1].distances, m.distances, atol=1e-5)

        flipped = evaluate(pairs, [("dlib", model)], EvalOptions(flip=True, metric="cosine"), cache)
        assert flipped.detected_now == 0
        d = flipped.models[0].distances
        assert d.shape == (80,) and (d >= 0).all() and (d <= 2).all()
        assert not np.allclose(d, paired_distances(np.ones((1, 2)), np.ones((1, 2))))

        cosine = evaluate(pairs, [("dlib", model)], EvalOptions(metric="cosine"), cache).models[0].distances
        centred = evaluate(pairs, [("dlib", model)], EvalOptions(metric="cosine", subtract_mean=True), cache)
        assert not np.allclose(centred.models[0].distances, cosine)  # centring moves cosine distances
        assert centred.models[0].total["accuracy"] > 0.85
        euclid = evaluate(pairs, [("dlib", model)], EvalOptions(subtract_mean=True), cache).models[0].distances
        np.testing.assert_allclose(euclid, m.distances, atol=1e-9)  # and cannot move Euclidean ones

        out = tmp_path / "report"
        out.mkdir()
        doc = write_report(other, out, command="facefit eval ...")
    assert {p.name for p in out.iterdir()} == {"metrics.json", "report.md", "scores.csv", "roc.png", "scores.png"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    total = saved["models"]["dlib"]["total"]
    for key in ("accuracy", "accuracy_std", "threshold", "val", "far", "auc", "eer", "tar_at_far_1e-2",
                "tar_at_far_1e-3", "tar_at_far_1e-4"):
        assert key in total
    assert total["tar_at_far_1e-3"] is not None  # 40 negatives: reported at FAR 0, with a note
    assert any("below 1/40" in n for n in total["notes"])
    assert saved["pairs"]["n_pairs"] == 80 and len(saved["data"]["sha256"]) == 64
    report = (out / "report.md").read_text()
    assert "## Side by side" in report and "| accuracy |" in report
    assert len((out / "scores.csv").read_text().splitlines()) == 81
    cal = load_calibration(out / "metrics.json", model.contract.id)
    assert cal.threshold == total["threshold_at_far_1e-3"] and cal.metric == "euclidean"
    with pytest.raises(Exception, match="not for this model"):
        load_calibration(out / "metrics.json", "someone-else:123")


def test_no_face_images_keep_their_pairs(yale_dir: Path, model, tmp_path: Path) -> None:
    """An image without a detectable face gets the fallback box; its pairs are scored, not dropped."""
    root = tmp_path / "people"
    for subject in ("subject01", "subject02", "subject03"):
        shutil.copytree(yale_dir / subject, root / subject)
    grey = load_image(yale_dir / "subject02" / "02_normal.png")
    x0, y0, x1, y1 = (int(v) for v in detect_and_align(grey)[0].box)
    # Blur out the face so HOG cannot find it, keeping the photo's layout.
    blurred = grey.copy()
    blurred[y0:y1, x0:x1] = blurred[y0:y1, x0:x1].mean(axis=(0, 1)).astype(np.uint8)
    Image.fromarray(blurred).save(root / "subject02" / "02_blurred.png")
    rows = ["path_a,path_b,same"]
    people = ["subject01/01_normal.png", "subject01/01_happy.png", "subject02/02_happy.png",
              "subject02/02_sad.png", "subject03/03_normal.png", "subject03/03_sleepy.png"]
    for i, a in enumerate(people):
        for b in people[i + 1:]:
            rows.append(f"{a},{b},{int(a.split('/')[0] == b.split('/')[0])}")
    rows.append("subject02/02_blurred.png,subject02/02_happy.png,1")
    rows.append("subject02/02_blurred.png,subject01/01_happy.png,0")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    pairs = read_pairs(tmp_path / "pairs.csv", root, n_folds=2)
    with EvalCache(tmp_path / "c.sqlite") as cache:
        run = evaluate(pairs, [("dlib", model)], EvalOptions(workers=1, n_folds=2), cache)
    assert [p.name for p in run.no_face] == ["02_blurred.png"]
    assert len(run.models[0].distances) == len(pairs) == 17
    assert np.isfinite(run.models[0].distances).all()
    assert run.fallback_box != (0.25, 0.25, 0.75, 0.75) or len(pairs.images()) < 10


def test_undecodable_image_is_an_error_not_a_dropped_pair(yale_dir: Path, model, tmp_path: Path) -> None:
    root = tmp_path / "people"
    shutil.copytree(yale_dir / "subject01", root / "subject01")
    (root / "subject01" / "01_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "pairs.csv").write_text("path_a,path_b,same\nsubject01/01_normal.png,subject01/01_broken.png,1\n"
                                        "subject01/01_normal.png,subject01/01_happy.png,1\n")
    pairs = read_pairs(tmp_path / "pairs.csv", root)
    with EvalCache(tmp_path / "c.sqlite") as cache, pytest.raises(PairsError, match="01_broken.png"):
        evaluate(pairs, [("dlib", model)], EvalOptions(workers=1), cache)


def test_each_model_gets_its_own_detector_and_an_ensemble_its_members(lfw_small, model, tmp_path: Path) -> None:
    """sface is fed YuNet's template crop, dlib-resnet HOG's dlib chip, in one run; an ensemble's
    distances equal embedding its faces directly, and its members' embeddings come from the cache."""
    from facefit.models.ensemble import EnsembleEmbedder

    pairs_file, root = lfw_small
    pairs = read_pairs(pairs_file, root)
    sface = create_model("sface")
    ens = EnsembleEmbedder([sface, model], [0.6, 0.4])
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        run = evaluate(pairs, [("dlib", model), ("sface", sface)], EvalOptions(metric="auto", workers=2), cache)
        assert [m.detector for m in run.models] == ["hog", "yunet"]
        assert run.models[1].total["accuracy"] >= 0.95 and run.models[1].metric == "cosine"
        for p, d in list(zip(pairs.pairs, run.models[1].distances))[:4]:
            ea, eb = (sface.embed(detect_and_align(load_image(x), faces="center", recipe=sface.contract.align)[0]
                                  .chip[None])[0] for x in (p.a, p.b))
            assert abs(paired_distances(ea[None], eb[None], "cosine")[0] - d) < 1e-4
        both = evaluate(pairs, [("ens", ens)], EvalOptions(metric="auto", workers=2), cache)
        # The sface member's embeddings were cached by sface's own run (same detector and crop); the dlib
        # member is new here: it reads YuNet's boxes.
        assert both.models[0].embedded_now == len(pairs.images()) and both.detected_now == 0
        for p, d in list(zip(pairs.pairs, both.models[0].distances))[:4]:
            ea, eb = (facefit_represent(x, ens) for x in (p.a, p.b))
            assert abs(paired_distances(ea[None], eb[None], "cosine")[0] - d) < 1e-4
        again = evaluate(pairs, [("ens", ens)], EvalOptions(metric="auto", workers=2), cache)
        assert again.models[0].embedded_now == 0
        np.testing.assert_allclose(again.models[0].distances, both.models[0].distances, atol=1e-6)


def facefit_represent(path: Path, model) -> np.ndarray:
    from facefit import represent

    return represent(path, model, faces="center")[0].embedding


def test_the_cache_never_serves_one_precision_to_another(lfw_small, tmp_path: Path) -> None:
    """fp32 and bf16 embeddings of the same faces are cached apart, and the report says which ran."""
    import torch

    from facefit.models.precision import bf16_unsupported

    if bf16_unsupported(torch.device("cpu")):
        pytest.skip("no bf16 on this CPU")
    pairs = read_pairs(*lfw_small)
    runs = {}
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        for precision in ("fp32", "bf16", "fp32"):
            net = create_model("dlib-resnet", precision=precision)
            runs.setdefault(precision, []).append(evaluate(pairs, [("dlib", net)], EvalOptions(workers=2), cache))
    fp32, bf16, fp32_again = runs["fp32"][0].models[0], runs["bf16"][0].models[0], runs["fp32"][1].models[0]
    n_images = len(pairs.images())
    assert (fp32.embedded_now, bf16.embedded_now, fp32_again.embedded_now) == (n_images, n_images, 0)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    np.testing.assert_array_equal(fp32_again.distances, fp32.distances)
    assert not np.array_equal(bf16.distances, fp32.distances)
    assert np.abs(bf16.distances - fp32.distances).max() < 0.02  # the same faces, to bf16's precision
    doc = metrics_doc(runs["bf16"][0])
    assert doc["models"]["dlib"]["precision"] == "bf16"
