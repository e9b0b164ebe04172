"""The external check: facefit's evaluation reproduces dlib's own pipeline on the full benchmarks.

dlib's pipeline (HOG detector, shape_predictor_5, ResNet descriptor, Euclidean
distance, thresholds chosen on the other folds) measured on the same images
(../shared/data/README.md): LFW 0.9875 +- 0.0042, Korean validation 0.795.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facefit.data.pairs import read_pairs
from facefit.eval.run import EvalOptions, evaluate
from facefit.io.assets import cache_dir
from facefit.io.cache import EvalCache

pytestmark = pytest.mark.slow


def test_lfw_matches_dlibs_pipeline(data_root: Path, model) -> None:
    pairs = read_pairs(data_root / "lfw" / "pairs.txt", data_root / "lfw" / "images")
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:  # the session's cache (shared with the demo test)
        run = evaluate(pairs, [("dlib-resnet", model)], EvalOptions(), cache)
    total = run.models[0].total
    assert abs(total["accuracy"] - 0.9875) <= 0.003, total["accuracy"]
    assert abs(total["auc"] - 0.998) <= 0.001
    assert abs(total["tar_at_far_1e-3"] - 0.941) <= 0.01
    assert len(run.no_face) == 24  # dlib's pipeline found no face in the same number of images


def test_korean_validation_matches_dlibs_pipeline(data_root: Path, model) -> None:
    pairs = read_pairs(data_root / "kfamily" / "val_pairs.csv", data_root / "kfamily" / "val")
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:  # the session's cache (shared with the demo test)
        run = evaluate(pairs, [("dlib-resnet", model)], EvalOptions(), cache)
    total = run.models[0].total
    assert abs(total["accuracy"] - 0.795) <= 0.01, total["accuracy"]
    assert abs(total["auc"] - 0.878) <= 0.01
    assert abs(total["tar_at_far_1e-2"] - 0.315) <= 0.02
    assert len(run.no_face) == 16
