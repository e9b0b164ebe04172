"""The one path from photos to embeddings: every way in (one photo in memory, files, the cached set) agrees.

Real Yale photos (one face each) through dlib-resnet and SFace, and an ensemble of both, whose members
need different crops of the same face.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from facefit.align import detect_and_align
from facefit.engine import EmbedOptions, FaceEngine, embed_images
from facefit.io.cache import EvalCache
from facefit.io.images import load_image
from facefit.models import create_model
from facefit.models.ensemble import EnsembleEmbedder


@pytest.fixture(scope="module")
def sface():
    return create_model("sface")


@pytest.fixture(scope="module")
def photos(yale_files: list[Path]) -> list[Path]:
    """One frontal photo of each of eight subjects."""
    return [p for p in yale_files if p.name.endswith("normal.png")][:8]


def test_find_is_the_models_own_alignment(model, sface, photos: list[Path]) -> None:
    image = load_image(photos[0])
    for net in (model, sface):
        found = FaceEngine(net).find(image)
        ref = detect_and_align(image, recipe=net.contract.align)
        assert len(found) == len(ref) == 1
        assert found[0].chip.shape == (*net.contract.input_size, 3)  # never another model's chip size
        np.testing.assert_array_equal(found[0].chip, ref[0].chip)
        np.testing.assert_array_equal(detect_and_align(image, model=net)[0].chip, ref[0].chip)


def test_in_memory_and_file_paths_give_the_same_embeddings(model, sface, photos: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    for net in (model, sface):
        engine = FaceEngine(net, faces="largest", workers=1, batch_size=3)  # batches of 3: several flushes
        got = engine.embed_files([*photos[:4], bad, *photos[4:]])
        assert got.paths == [str(p) for p in photos]
        assert [Path(p).name for p, _ in got.failures] == ["broken.png"] and got.n_images == len(photos) + 1
        one_by_one = np.stack([engine.represent(load_image(p))[0][1] for p in photos])
        np.testing.assert_allclose(got.embeddings, one_by_one, atol=1e-5)


def test_cached_path_matches_the_file_path_and_is_reused(model, sface, photos: list[Path], tmp_path: Path) -> None:
    options = EmbedOptions(faces="center", workers=1, batch_size=5)
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        first = embed_images(photos, [("dlib", model), ("sface", sface)], options, cache)
        assert first.detected_now == 2 * len(photos)  # two detection setups (hog, yunet): one pass each
        assert first.embedded_now == [len(photos)] * 2 and not first.no_face
        again = embed_images(photos, [("sface", sface), ("dlib", model)], options, cache)
        assert again.detected_now == 0 and again.embedded_now == [0, 0]  # all from the cache
    for k, net in enumerate((model, sface)):
        files = FaceEngine(net, faces="center", workers=1).embed_files(photos).embeddings
        cached = np.stack([first.embeddings[k][p] for p in photos])
        np.testing.assert_allclose(cached, files, atol=1e-5)
        np.testing.assert_array_equal(np.stack([again.embeddings[1 - k][p] for p in photos]), cached)


def test_an_ensemble_gets_each_members_crop_on_every_path(model, sface, photos: list[Path], tmp_path: Path) -> None:
    ens = EnsembleEmbedder([sface, model], [0.4, 0.6])
    files = FaceEngine(ens, faces="center", workers=1).embed_files(photos[:4]).embeddings
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        got = embed_images(photos[:4], [("ens", ens)], EmbedOptions(faces="center", workers=1), cache)
    np.testing.assert_allclose(np.stack([got.embeddings[0][p] for p in photos[:4]]), files, atol=1e-5)
    single = FaceEngine(ens).represent(load_image(photos[0]))
    np.testing.assert_allclose(single[0][1], files[0], atol=1e-5)


def test_images_without_a_face_get_the_fallback_chip(model, photos: list[Path], tmp_path: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 243), (128, 128, 128)).save(blank)
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        got = embed_images([*photos, blank], [("dlib", model)], EmbedOptions(workers=1), cache)
    assert got.no_face == [blank] and blank in got.embeddings[0]  # kept, not dropped


def test_one_engine_serves_many_threads(model, photos: list[Path]) -> None:
    engine = FaceEngine(model)
    images = [load_image(p) for p in photos[:4]]
    expected = [engine.find(im)[0].chip for im in images]
    results: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        results[k] = [engine.find(im)[0].chip for im in images]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for a, b in zip(results[k], expected):
            np.testing.assert_array_equal(a, b)


def test_auto_precision_is_measured_before_the_alignment_workers_start(yale_files: list[Path], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured while workers keep the cores busy (or with torch cut to the cores they leave), bf16's gain
    hides, and the machine's choice is cached: so ``auto`` is settled first, on real faces, alone."""
    import multiprocessing

    import torch

    from facefit.models import precision as prec

    seen: list[tuple[int, int, int]] = []

    def rates(net, chips):
        seen.append((len(chips), torch.get_num_threads(), len(multiprocessing.active_children())))
        return 100.0, 200.0, 1.0

    monkeypatch.setattr(prec, "measure_rates", rates)
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path))
    threads = torch.get_num_threads()
    files = create_model("dlib-resnet", precision="auto")
    photos = yale_files[:24]  # enough for worker processes, and for evaluation to share the cores with them
    FaceEngine(files, workers=2).embed_files(photos)
    cached = create_model("sface", precision="auto")
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        embed_images(photos, [("sface", cached)], EmbedOptions(workers=2), cache)
    assert seen == [(24, threads, 0), (24, threads, 0)]  # every face of the 24 photos (up to 32)
    assert files.precision == cached.precision == "bf16"


def test_an_unreadable_image_loses_none_of_the_others_embeddings(model, photos: list[Path], tmp_path: Path) -> None:
    from facefit.errors import FacefitError

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        with pytest.raises(FacefitError, match="broken.png"):
            embed_images([*photos, bad], [("dlib", model)], EmbedOptions(workers=1, batch_size=64), cache)
        again = embed_images(photos, [("dlib", model)], EmbedOptions(workers=1), cache)
    assert again.embedded_now == [0]


def test_a_run_under_auto_reuses_what_fp32_cached(photos: list[Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` is settled on the first faces before anything is looked up, so once it comes out fp32 every
    embedding an fp32 run cached (the fallback chip's too) is used, none computed again."""
    from PIL import Image

    from facefit.models import precision as prec

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 243), (128, 128, 128)).save(blank)
    images = [*photos, blank]
    with EvalCache(tmp_path / "cache.sqlite") as cache:
        embed_images(images, [("dlib", create_model("dlib-resnet", precision="fp32"))], EmbedOptions(workers=1),
                     cache)
        monkeypatch.setattr(prec, "measure_rates", lambda net, chips: (100.0, 100.0, 1.0))  # auto -> fp32
        monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
        monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path))
        auto = create_model("dlib-resnet", precision="auto")
        got = embed_images(images, [("dlib", auto)], EmbedOptions(workers=1), cache)
    assert auto.precision == "fp32" and got.embedded_now == [0] and got.no_face == [blank]


def test_one_path_where_a_list_is_expected_is_a_clear_error(model, photos: list[Path]) -> None:
    with pytest.raises(TypeError, match="a list of paths, not one path"):
        FaceEngine(model).embed_files(str(photos[0]))
    with pytest.raises(TypeError, match="a loaded model"):
        detect_and_align(photos[0], model="sface")
