"""Verification metrics checked against slow, obviously-correct references written here and scikit-learn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facefit.eval.metrics import FAR_TARGETS, far_key, roc_curve, subgroup_metrics, verification_metrics

# ------------------------------------------------------------------------------------------ data makers


def random_pairs(n: int = 300, seed: int = 0, sep: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    scores = rng.normal(size=n) + sep * same
    return scores, same


def tied_pairs(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    scores, same = random_pairs(n, seed, sep=0.8)
    return np.round(scores, 1), same  # a few dozen distinct values, many pos/neg ties


def separable_pairs(n: int = 200, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    scores = np.where(same, rng.uniform(1.0, 2.0, n), rng.uniform(-1.0, 0.5, n))
    return scores, same


DATASETS = {"random": random_pairs, "tied": tied_pairs, "separable": separable_pairs}

# ------------------------------------------------------------------------------------ naive references


def naive_rates(scores, same, t: float) -> tuple[float, float]:
    """(FAR, TAR) of the rule score >= t, by counting pair by pair."""
    fa = ta = n_neg = n_pos = 0
    for s, y in zip(scores, same):
        if y:
            n_pos += 1
            ta += s >= t
        else:
            n_neg += 1
            fa += s >= t
    return fa / n_neg, ta / n_pos


def every_threshold(scores) -> list[float]:
    """Every threshold that can change a decision: each distinct score, plus +inf (nothing accepted)."""
    return [math.inf, *sorted(set(float(s) for s in scores), reverse=True)]


def naive_tar_at_far(scores, same, target: float) -> float:
    best = 0.0
    for t in every_threshold(scores):
        far, tar = naive_rates(scores, same, t)
        if far <= target:
            best = max(best, tar)
    return best


def naive_eer(scores, same) -> float:
    points = [naive_rates(scores, same, t) for t in every_threshold(scores)]
    for (far0, tar0), (far1, tar1) in zip(points, points[1:]):
        d0, d1 = (1 - tar0) - far0, (1 - tar1) - far1
        if d0 == 0:
            return far0
        if d0 > 0 >= d1:
            w = d0 / (d0 - d1)
            return far0 + w * (far1 - far0)
    raise AssertionError("FRR - FAR never changed sign")


def naive_best_threshold(scores, same) -> float:
    """Try every candidate (-inf, midpoints of distinct scores, +inf); keep the median of the best ones."""
    u = sorted(set(float(s) for s in scores))
    candidates = [-math.inf] + [(a + b) / 2 for a, b in zip(u, u[1:])] + [math.inf]
    accs = []
    for t in candidates:
        accs.append(sum((s >= t) == bool(y) for s, y in zip(scores, same)))
    best = [t for t, a in zip(candidates, accs) if a == max(accs)]
    return best[(len(best) - 1) // 2]


def naive_kfold(scores, same, folds) -> tuple[list[float], list[float]]:
    """Per-fold (test accuracy, chosen training threshold)."""
    accs, thrs = [], []
    for k in sorted(set(folds.tolist())):
        train = folds != k
        t = naive_best_threshold(scores[train], same[train])
        test = folds == k
        accs.append(float(np.mean([(s >= t) == bool(y) for s, y in zip(scores[test], same[test])])))
        thrs.append(t)
    return accs, thrs


def naive_val_fold(scores, same, folds, k: int, val_far: float) -> tuple[float, float]:
    """FaceNet VAL/FAR on fold k: the smallest threshold (only just above some training negative, or -inf)
    letting through at most floor(val_far * n_neg) training negatives."""
    train_neg = [float(s) for s, y, f in zip(scores, same, folds) if f != k and not y]
    allowed = math.floor(val_far * len(train_neg) + 1e-9)
    candidates = sorted({-math.inf, *(float(np.nextafter(s, math.inf)) for s in train_neg)})
    t = next(c for c in candidates if sum(s >= c for s in train_neg) <= allowed)
    test = folds == k
    pos = [s for s, y in zip(scores[test], same[test]) if y]
    neg = [s for s, y in zip(scores[test], same[test]) if not y]
    return sum(s >= t for s in pos) / len(pos), sum(s >= t for s in neg) / len(neg)


def ten_folds(n: int) -> np.ndarray:
    return (np.arange(n) * 10) // n


# ------------------------------------------------------------------------------------------------ tests


def test_far_key() -> None:
    assert [far_key(t) for t in FAR_TARGETS] == ["tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4"]
    assert far_key(0.05) == "tar_at_far_5e-2"
    assert far_key(1.5e-3) == "tar_at_far_1.5e-3"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_roc_curve_matches_sklearn(name: str) -> None:
    scores, same = DATASETS[name]()
    far, tar, thr = roc_curve(scores, same)
    sk_far, sk_tar, sk_thr = sk_roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, sk_far, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tar, sk_tar, rtol=0, atol=1e-12)
    assert thr[0] == math.inf
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert thr.size == len(set(scores.tolist())) + 1
    # Each point really is the rule score >= threshold.
    for k in range(0, thr.size, 7):
        assert (far[k], tar[k]) == pytest.approx(naive_rates(scores, same, thr[k]))


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_auc_matches_sklearn(name: str) -> None:
    scores, same = DATASETS[name]()
    r = verification_metrics(scores, same)
    assert r["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


def test_auc_counts_ties_as_half() -> None:
    # One positive and one negative with the same score: neither ranks above the other.
    assert verification_metrics([0.3, 0.3], [1, 0])["auc"] == pytest.approx(0.5)
    assert verification_metrics([0.3, 0.3, 0.9], [1, 0, 1])["auc"] == pytest.approx(0.75)


def test_perfectly_separable() -> None:
    scores, same = separable_pairs()
    r = verification_metrics(scores, same)
    assert r["auc"] == 1.0
    assert r["eer"] == 0.0
    assert r["eer_threshold"] == pytest.approx(scores[same].min())
    assert r["accuracy"] == 1.0 and r["accuracy_std"] == 0.0
    assert r["fold_accuracies"] == [1.0] * 10
    assert r[far_key(1e-3)] == 1.0
    assert r["far_at_threshold"] == 0.0 and r["frr_at_threshold"] == 0.0
    # The chosen threshold sits in the gap between the classes.
    assert scores[~same].max() < r["threshold"] < scores[same].min()


@pytest.mark.parametrize("name", ["random", "tied"])
def test_kfold_accuracy_matches_naive(name: str) -> None:
    scores, same = DATASETS[name]()
    folds = ten_folds(scores.size)
    r = verification_metrics(scores, same, folds)
    accs, thrs = naive_kfold(scores, same, folds)
    np.testing.assert_allclose(r["fold_accuracies"], accs, rtol=0, atol=1e-12)
    assert r["accuracy"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert r["accuracy_std"] == pytest.approx(np.std(accs), abs=1e-12)
    assert all(math.isfinite(t) for t in thrs)  # these data sets never pick +-inf
    np.testing.assert_allclose(r["fold_thresholds"], thrs, rtol=0, atol=1e-12)
    assert r["threshold"] == pytest.approx(np.mean(thrs), abs=1e-12)
    assert 0.55 < r["accuracy"] < 0.95  # not a degenerate case


def test_kfold_accuracy_shuffled_folds_match_naive() -> None:
    scores, same = tied_pairs(200, seed=5)
    folds = np.random.default_rng(5).integers(0, 4, size=scores.size)
    r = verification_metrics(scores, same, folds)
    accs, thrs = naive_kfold(scores, same, folds)
    np.testing.assert_allclose(r["fold_accuracies"], accs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["fold_thresholds"], thrs, rtol=0, atol=1e-12)
    assert r["n_folds"] == 4


def test_kfold_median_tie_break() -> None:
    # Training fold: candidates 0.5 and 2.5 both get 3 of 4 right; the lower-middle of the two is 0.5.
    scores = np.array([0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0])
    same = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    r = verification_metrics(scores, same, folds)
    assert r["fold_thresholds"] == [0.5, 0.5]
    assert r["fold_accuracies"] == [0.75, 0.75]
    # Three tied candidates (0.5, 2.5, 4.5): the median is 2.5.
    scores6, same6 = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0, 1, 0, 1, 0, 1]
    assert naive_best_threshold(scores6, same6) == 2.5
    assert verification_metrics(scores6, same6, [0] * 6)["fold_thresholds"] == [2.5]
    # Four tied candidates (0.5, 2.5, 4.5, 6.5): the lower middle one, 2.5.
    scores8, same8 = [float(i) for i in range(8)], [0, 1] * 4
    assert naive_best_threshold(scores8, same8) == 2.5
    assert verification_metrics(scores8, same8, [0] * 8)["fold_thresholds"] == [2.5]


def test_infinite_training_threshold_is_reported_finite() -> None:
    # Fold 1's training part is all positive, so "accept everything" (-inf) is best there.
    scores = np.array([0.2, 0.4, 0.6, 0.1, 0.3])
    same = np.array([1, 1, 1, 0, 1], dtype=bool)
    folds = np.array([0, 0, 0, 1, 1])
    r = verification_metrics(scores, same, folds)
    eps = 1e-6 * (0.6 - 0.2)
    assert r["fold_thresholds"][1] == pytest.approx(0.2 - eps, abs=1e-15)
    # The test fold is still judged with -inf: both pairs accepted, one of them wrongly.
    assert r["fold_accuracies"][1] == 0.5
    assert any("fold 1" in n and "-inf" in n for n in r["notes"])


@pytest.mark.parametrize("name", ["random", "tied"])
def test_tar_at_far_matches_naive(name: str) -> None:
    scores, same = DATASETS[name](400)
    targets = (0.2, 0.1, 0.05, 0.01)
    r = verification_metrics(scores, same, far_targets=targets)
    for target in targets:
        expected = naive_tar_at_far(scores, same, target)
        assert r[far_key(target)] == pytest.approx(expected, abs=1e-12), target
        far, tar = naive_rates(scores, same, r[f"threshold_at_far_{far_key(target)[11:]}"])
        assert far <= target
        assert tar == pytest.approx(expected, abs=1e-12)
    assert r[far_key(0.2)] > r[far_key(0.01)] > 0


def test_tar_at_far_never_exceeds_target() -> None:
    # 7 negatives: the ROC point nearest FAR=0.1 is FAR=1/7 (TAR 1 at threshold 6), which overshoots the
    # target; the metric must stay at FAR=0 (TAR 0.5 at threshold 9).
    scores = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=float)
    same = np.array([1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    r = verification_metrics(scores, same, far_targets=(0.1,))
    assert r[far_key(0.1)] == 0.5
    assert r["threshold_at_far_1e-1"] == 9.0


def test_target_below_one_over_negatives() -> None:
    scores, same = random_pairs(300, seed=3)
    n_neg = int((~same).sum())
    assert 1 / n_neg > 1e-3
    r = verification_metrics(scores, same)
    for target in (1e-3, 1e-4):
        assert f"TAR@FAR={target:g}: target is below 1/{n_neg} negatives, so it is reported at FAR=0" in r["notes"]
        assert r[far_key(target)] == pytest.approx(naive_tar_at_far(scores, same, 0.0))
        assert r[far_key(target)] == pytest.approx(np.mean(scores[same] > scores[~same].max()))
    assert not any(n.startswith("TAR@FAR=0.01:") for n in r["notes"])  # 0.01 >= 1/n_neg
    # Right at the edge: 1/n_neg itself is reachable (one false accept), a hair below is not.
    below, edge = 0.99 / n_neg, 1.0 / n_neg
    r = verification_metrics(scores, same, far_targets=(below, edge))
    tar_notes = [n for n in r["notes"] if n.startswith("TAR@FAR=")]
    assert len(tar_notes) == 1 and tar_notes[0].startswith(f"TAR@FAR={below:g}: target is below 1/{n_neg} negatives")
    assert r[far_key(below)] == pytest.approx(naive_tar_at_far(scores, same, 0.0))
    assert r[far_key(edge)] == pytest.approx(naive_tar_at_far(scores, same, edge))
    assert r[far_key(edge)] > r[far_key(below)]


def test_tar_zero_reports_infinite_threshold() -> None:
    # The top score is a negative, so no positive can be accepted at FAR=0.
    r = verification_metrics([5.0, 4.0, 3.0, 2.0], [0, 1, 0, 1], far_targets=(0.1,))
    assert r[far_key(0.1)] == 0.0
    assert r["threshold_at_far_1e-1"] == math.inf


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_eer_matches_naive_scan(name: str) -> None:
    scores, same = DATASETS[name]()
    r = verification_metrics(scores, same)
    assert r["eer"] == pytest.approx(naive_eer(scores, same), abs=1e-12)
    # The interpolated threshold lies between scores whose FAR/FRR bracket the EER.
    far, frr = naive_rates(scores, same, r["eer_threshold"])[0], 1 - naive_rates(scores, same, r["eer_threshold"])[1]
    assert min(far, frr) - 0.02 <= r["eer"] <= max(far, frr) + 0.02


def test_eer_hand_example() -> None:
    # ROC points (FAR, FRR): (0, 1), (0, .5), (.5, .5), (.5, 0), (1, 0): FRR - FAR hits 0 at (.5, .5).
    r = verification_metrics([4.0, 3.0, 2.0, 1.0], [1, 0, 1, 0])
    assert r["eer"] == 0.5
    assert r["eer_threshold"] == 3.0
    # Crossing strictly between two points: (FAR, FRR) goes (1/3, 1/2) -> (1/3, 0), d from 1/6 to -1/3, so a third
    # of the way along: FAR = FRR = 1/3 and the threshold a third of the way from 4 to 3.
    r = verification_metrics([5.0, 4.0, 3.0, 2.0, 1.0], [1, 0, 1, 0, 0])
    assert r["eer"] == pytest.approx(1 / 3)
    assert r["eer_threshold"] == pytest.approx(11 / 3)


def test_val_matches_naive() -> None:
    scores, same = random_pairs(500, seed=4, sep=1.0)
    folds = ten_folds(scores.size)
    for val_far in (0.05, 0.01, 1e-3):
        r = verification_metrics(scores, same, folds, val_far=val_far)
        per_fold = [naive_val_fold(scores, same, folds, k, val_far) for k in range(10)]
        vals = [v for v, _ in per_fold]
        np.testing.assert_allclose(r["fold_vals"], vals, rtol=0, atol=1e-12)
        assert r["val"] == pytest.approx(np.mean(vals), abs=1e-12)
        assert r["val_std"] == pytest.approx(np.std(vals), abs=1e-12)
        assert r["far"] == pytest.approx(np.mean([f for _, f in per_fold]), abs=1e-12)
    r = verification_metrics(scores, same, folds, val_far=0.05)
    assert 0.1 < r["val"] < 0.6
    assert not any(n.startswith("VAL@FAR=0.05 rests") for n in r["notes"])  # 0.05 * ~270 = 13.5 >= 10
    r = verification_metrics(scores, same, folds, val_far=0.01)
    n_train_neg = np.mean([np.sum(~same[folds != k]) for k in range(10)])
    assert f"VAL@FAR=0.01 rests on about {0.01 * n_train_neg:.2g} false accepts per training fold" in r["notes"][0]


def test_val_with_all_negatives_equal() -> None:
    rng = np.random.default_rng(6)
    same = rng.random(400) < 0.5
    scores = np.where(same, rng.normal(size=400), 0.0)  # every negative scores exactly 0
    folds = ten_folds(400)
    r = verification_metrics(scores, same, folds, val_far=0.1)
    assert r["far"] == 0.0  # the threshold sits just above 0, so no negative gets through
    expected = [np.mean(scores[(folds == k) & same] > 0) for k in range(10)]
    np.testing.assert_allclose(r["fold_vals"], expected, rtol=0, atol=1e-12)
    # With val_far = 1 every negative may pass: threshold -inf, VAL = FAR = 1.
    r = verification_metrics(scores, same, folds, val_far=1.0)
    assert r["val"] == 1.0 and r["far"] == 1.0


def test_val_with_duplicate_scores_everywhere() -> None:
    rng = np.random.default_rng(7)
    same = rng.random(300) < 0.5
    scores = rng.integers(0, 3, size=300).astype(float) + same  # only 4 distinct values
    folds = ten_folds(300)
    for val_far in (1e-3, 0.2, 0.5, 0.9):
        r = verification_metrics(scores, same, folds, val_far=val_far)
        vals = [naive_val_fold(scores, same, folds, k, val_far)[0] for k in range(10)]
        np.testing.assert_allclose(r["fold_vals"], vals, rtol=0, atol=1e-12)


def test_val_one_class_folds() -> None:
    # Fold 0 holds only negatives, fold 1 only positives, fold 2 both.
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.15, 0.85, 0.25, 0.75])
    same = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1], dtype=bool)
    folds = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    r = verification_metrics(scores, same, folds, val_far=0.0)
    assert math.isnan(r["fold_vals"][0])  # no positives to accept in fold 0
    assert "fold 0: test fold has no positive pairs, VAL undefined there" in r["notes"]
    assert r["fold_vals"][1] == 1.0  # threshold just above 0.3: all of 0.7..0.9 pass
    assert r["fold_vals"][2] == 1.0
    assert r["val"] == 1.0 and r["val_std"] == 0.0
    # Fold 1 has no negatives to measure FAR on; fold 0's threshold sits just above 0.25, so 0.3 gets through.
    assert math.isnan(r["fold_fars"][1]) and r["fold_fars"][0] == pytest.approx(1 / 3)
    # Training part without negatives: all negatives live in the test fold.
    folds2 = np.where(same, 1, 0)
    r = verification_metrics(scores, same, folds2)
    assert "fold 0: training folds have no negative pairs, VAL undefined there" in r["notes"]
    assert math.isnan(r["fold_vals"][0])
    assert r["fold_vals"][1] == 1.0 and r["val"] == 1.0


def test_val_all_folds_undefined_is_nan() -> None:
    r = verification_metrics([0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0], [0, 0, 1, 1])
    assert math.isnan(r["val"]) and math.isnan(r["val_std"])
    # Fold 0: threshold just above 0.4 rejects 0.1 and 0.2; fold 1: just above 0.2 accepts 0.3 and 0.4.
    assert r["fold_fars"] == [0.0, 1.0] and r["far"] == 0.5


def test_two_pairs() -> None:
    r = verification_metrics([0.9, 0.1], [1, 0])
    assert r["auc"] == 1.0 and r["eer"] == 0.0
    assert r["n_pairs"] == 2 and r["n_pos"] == 1 and r["n_neg"] == 1 and r["n_folds"] == 2
    # Each training part holds one class, so each fold's threshold accepts/rejects all: 0 of 1 right.
    assert r["fold_accuracies"] == [0.0, 0.0]
    assert r[far_key(1e-2)] == 1.0 and r["threshold_at_far_1e-2"] == 0.9
    json.dumps(r)


def test_three_pairs() -> None:
    scores, same = [0.9, 0.1, 0.5], [1, 0, 1]
    r = verification_metrics(scores, same, [0, 1, 2])
    accs, thrs = naive_kfold(np.array(scores), np.array(same, bool), np.array([0, 1, 2]))
    assert r["fold_accuracies"] == accs
    assert r["auc"] == 1.0
    assert r["eer_threshold"] == 0.5


def test_all_scores_equal() -> None:
    same = np.array([1, 0, 1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    r = verification_metrics(np.full(10, 0.7), same, n_folds=5)
    assert r["auc"] == 0.5
    assert r["eer"] == 0.5
    assert r[far_key(1e-2)] == 0.0 and r["threshold_at_far_1e-2"] == math.inf
    far, tar, thr = roc_curve(np.full(10, 0.7), same)
    assert far.tolist() == [0.0, 1.0] and tar.tolist() == [0.0, 1.0] and thr.tolist() == [math.inf, 0.7]
    accs, _ = naive_kfold(np.full(10, 0.7), same, (np.arange(10) * 5) // 10)
    assert r["fold_accuracies"] == accs


def test_one_class_only() -> None:
    r = verification_metrics([0.1, 0.5, 0.9, 0.3], [1, 1, 1, 1])
    assert math.isnan(r["auc"]) and math.isnan(r["eer"]) and math.isnan(r["eer_threshold"])
    assert math.isnan(r[far_key(1e-3)])
    assert "only one class present: AUC and EER undefined" in r["notes"]
    # Each fold's "accept all" (-inf) is reported as just below its training minimum; their mean is ~0.15,
    # which rejects the lowest positive when pooled.
    assert r["threshold"] == pytest.approx((0.3 + 0.1 * 3) / 4, abs=1e-5)
    assert math.isnan(r["far_at_threshold"]) and r["frr_at_threshold"] == 0.25
    assert r["accuracy"] == 1.0  # accepting everything is right for every positive
    far, tar, _ = roc_curve([0.1, 0.5], [1, 1])
    assert np.all(np.isnan(far)) and tar.tolist() == [0.0, 0.5, 1.0]


def test_single_fold_is_resubstitution() -> None:
    scores, same = random_pairs(100, seed=8)
    r = verification_metrics(scores, same, np.zeros(100, dtype=int))
    assert r["n_folds"] == 1
    assert any("resubstitution" in n for n in r["notes"])
    t = naive_best_threshold(scores, same)
    assert r["fold_thresholds"] == [t]
    assert r["accuracy"] == pytest.approx(np.mean((scores >= t) == same))
    assert r["accuracy_std"] == 0.0


def test_default_folds_are_contiguous_blocks() -> None:
    scores, same = random_pairs(123, seed=9)
    r = verification_metrics(scores, same, n_folds=7)
    r2 = verification_metrics(scores, same, (np.arange(123) * 7) // 123)
    assert r["n_folds"] == 7
    assert r["fold_accuracies"] == r2["fold_accuracies"] and r["val"] == r2["val"]


def test_lists_and_int_labels_match_arrays() -> None:
    scores, same = random_pairs(80, seed=10)
    a = verification_metrics(scores, same, ten_folds(80))
    b = verification_metrics(scores.tolist(), same.astype(int).tolist(), ten_folds(80).tolist())
    c = verification_metrics(scores, same.astype(float), ten_folds(80).astype(float))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) == json.dumps(c, sort_keys=True)


def test_result_is_plain_json() -> None:
    scores, same = tied_pairs()
    r = verification_metrics(scores, same)
    required = {
        "accuracy", "accuracy_std", "threshold", "fold_thresholds", "fold_accuracies", "val", "val_std", "far",
        "auc", "eer", "eer_threshold", "far_at_threshold", "frr_at_threshold", "n_pairs", "n_pos", "n_neg",
        "n_folds", "notes",
        *(far_key(t) for t in FAR_TARGETS),
        *(f"threshold_at_far_{far_key(t)[11:]}" for t in FAR_TARGETS),
    }  # fmt: skip
    assert required <= r.keys()

    def plain(v) -> bool:
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return type(v) in (float, int, str)

    assert all(plain(v) for v in r.values()), {k: type(v) for k, v in r.items() if not plain(v)}
    assert json.loads(json.dumps(r))["n_pairs"] == 300


def test_far_frr_at_threshold() -> None:
    scores, same = random_pairs(300, seed=11)
    r = verification_metrics(scores, same)
    far, tar = naive_rates(scores, same, r["threshold"])
    assert r["far_at_threshold"] == pytest.approx(far) and r["frr_at_threshold"] == pytest.approx(1 - tar)


@pytest.mark.parametrize(
    ("scores", "same", "folds", "message"),
    [
        ([0.1, 0.2], [1], None, "same has 1"),
        ([0.1, 0.2], [1, 0], [0], "folds has 1"),
        ([], [], None, "empty"),
        ([0.1, math.nan], [1, 0], None, "NaN or infinite"),
        ([0.1, math.inf], [1, 0], None, "NaN or infinite"),
        ([0.1, 0.2], [1, 2], None, "0/1"),
        ([0.1, 0.2], [0.5, 1], None, "0/1"),
        ([0.1, 0.2], ["yes", "no"], None, "0/1"),
        ([0.1, 0.2], [1, 0], [0.5, 1.0], "integer"),
        ([0.1, 0.2], [1, 0], ["a", "b"], "integer"),
        (["x", "y"], [1, 0], None, "numbers"),
        ([[0.1, 0.2]], [1], None, "one-dimensional"),
    ],
)
def test_validation(scores, same, folds, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        verification_metrics(scores, same, folds)


def test_validation_of_options() -> None:
    with pytest.raises(ValueError, match="val_far"):
        verification_metrics([0.1, 0.2], [1, 0], val_far=1.5)
    with pytest.raises(ValueError, match="FAR targets"):
        verification_metrics([0.1, 0.2], [1, 0], far_targets=(0.0,))
    with pytest.raises(ValueError, match="n_folds"):
        verification_metrics([0.1, 0.2], [1, 0], n_folds=0)
    with pytest.raises(ValueError, match="0/1"):
        roc_curve([0.1, 0.2], [3, 0])


def test_subgroup_metrics() -> None:
    scores, same = random_pairs(240, seed=12)
    folds = ten_folds(240)
    rng = np.random.default_rng(12)
    sex = rng.choice(np.array(["f", "m", "", None], dtype=object), size=240, p=[0.45, 0.45, 0.05, 0.05])
    age = rng.choice([30, 5, 70], size=240)
    out = subgroup_metrics(scores, same, folds, {"sex": sex, "age": age.tolist()}, val_far=0.05, far_targets=(0.1,))
    assert list(out) == ["age=5", "age=30", "age=70", "sex=f", "sex=m"]
    for key, value, labels in [("age=30", 30, age), ("sex=m", "m", sex), ("sex=f", "f", sex)]:
        mask = labels == value
        direct = verification_metrics(scores[mask], same[mask], folds[mask], val_far=0.05, far_targets=(0.1,))
        assert json.dumps(out[key], sort_keys=True) == json.dumps(direct, sort_keys=True)
        assert out[key]["n_pairs"] == int(mask.sum())
    # Missing labels belong to no group.
    assert out["sex=f"]["n_pairs"] + out["sex=m"]["n_pairs"] == int(np.isin(sex, ["f", "m"]).sum()) < 240
    with pytest.raises(ValueError, match="labels"):
        subgroup_metrics(scores, same, folds, {"sex": sex[:10]})


def test_hundred_thousand_pairs_complete() -> None:
    scores, same = random_pairs(100_000, seed=13)
    r = verification_metrics(scores, same)
    assert r["n_pairs"] == 100_000 and r["n_folds"] == 10
    assert r["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert 0.7 < r["accuracy"] < 0.9
