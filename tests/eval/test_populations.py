"""FMR / FNMR per population at one shared threshold and the gap ratios, against a naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facefit.eval.populations import gap, rates_at, threshold_at_fmr


def naive_threshold(neg: list[float], fmr: float) -> float:
    """Try every candidate: each distinct distance and the float just below it; keep the largest allowed."""
    allowed = math.floor(fmr * len(neg) + 1e-9)
    cands = sorted({float(v) for v in neg} | {float(np.nextafter(v, -np.inf)) for v in neg})
    ok = [t for t in cands if sum(1 for v in neg if v <= t) <= allowed]
    return max(ok)


def naive_rates(dist: list[float], same: list[bool], t: float) -> tuple[float | None, float | None]:
    neg = [d for d, s in zip(dist, same) if not s]
    pos = [d for d, s in zip(dist, same) if s]
    fmr = sum(1 for d in neg if d <= t) / len(neg) if neg else None
    fnmr = sum(1 for d in pos if d > t) / len(pos) if pos else None
    return fmr, fnmr


@pytest.mark.parametrize("seed", range(8))
def test_threshold_and_rates_match_a_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    # Rounded distances make ties, the case where a careless threshold lets through too many pairs.
    neg = np.round(rng.normal(1.0, 0.15, n), 2)
    for fmr in (1e-3, 0.01, 0.05, 0.3):
        t = threshold_at_fmr(neg, fmr)
        assert t == naive_threshold(neg.tolist(), fmr)
        assert np.count_nonzero(neg <= t) <= math.floor(fmr * n + 1e-9)  # never above the target
    dist = np.r_[np.round(rng.normal(0.6, 0.15, 200), 2), neg]
    same = np.r_[np.ones(200, bool), np.zeros(n, bool)]
    t = threshold_at_fmr(neg, 0.05)
    r = rates_at(dist, same, t)
    assert (r["fmr"], r["fnmr"]) == naive_rates(dist.tolist(), same.tolist(), t)
    assert (r["n_pos"], r["n_neg"]) == (200, n)
    assert r["false_matches"] == round(r["fmr"] * n) and r["false_non_matches"] == round(r["fnmr"] * 200)


def test_threshold_edges() -> None:
    # Below the resolution: no different-person pair is accepted, the threshold sits just under the closest one.
    assert threshold_at_fmr([0.5, 0.7, 0.9], 1e-3) == np.nextafter(0.5, -np.inf)
    # A tie at the boundary is rejected whole: 2 of 4 allowed, but 0.5 appears 3 times.
    t = threshold_at_fmr([0.2, 0.5, 0.5, 0.5], 0.5)
    assert t < 0.5 and rates_at([0.2, 0.5, 0.5, 0.5], [False] * 4, t)["fmr"] == 0.25
    with pytest.raises(ValueError, match="no different-person pairs"):
        threshold_at_fmr([], 1e-3)
    r = rates_at([0.1, 0.9], [False, False], 0.5)
    assert r["fnmr"] is None and r["n_pos"] == 0 and r["fmr"] == 0.5


def naive_gap(rows: dict[str, tuple[int, int, int, int]]) -> tuple[float | None, float | None]:
    """rows: population -> (false matches, n_neg, false non-matches, n_pos). The highest rate is one measured
    with errors; the lowest may be a zero count taken as one error."""
    out = []
    for errs, total in ((0, 1), (2, 3)):
        have = {p: r for p, r in rows.items() if r[total] > 0}
        if len(have) > 1 and all(r[errs] == 0 for r in have.values()):
            out.append(None)
            continue
        rates = [max(r[errs], 1) / r[total] for r in have.values()]
        measured = [r[errs] / r[total] for r in have.values() if r[errs] > 0] or rates
        out.append(max(measured) / min(rates) if rates else None)
    return out[0], out[1]


def counted(fm: int, n_neg: int, fnm: int, n_pos: int) -> dict:
    """A ``rates_at`` result from its counts."""
    return {"fmr": fm / n_neg if n_neg else None, "fnmr": fnm / n_pos if n_pos else None, "false_matches": fm,
            "n_neg": n_neg, "false_non_matches": fnm, "n_pos": n_pos}


@pytest.mark.parametrize("rows", [
    {"a": (3, 1000, 40, 500), "b": (12, 2000, 10, 400), "c": (1, 300, 30, 300)},
    {"a": (0, 1000, 40, 500), "b": (6, 2000, 0, 400)},  # a zero count on each side
    {"a": (0, 1000, 0, 500), "b": (0, 2000, 5, 400)},  # no false match anywhere
    {"a": (4, 1000, 2, 0 + 500)},  # one population: ratio 1
    {"a": (2, 100, 3, 0), "b": (1, 100, 5, 50)},  # a population without same-person pairs: no FNMR
    {"small": (0, 10, 1, 10), "big": (1, 1000, 10, 1000)},  # 0 of 10 is no evidence of a 10% FMR
])
def test_gap_matches_a_naive_reference(rows: dict[str, tuple[int, int, int, int]]) -> None:
    g = gap({p: counted(*r) for p, r in rows.items()})
    want_fmr, want_fnmr = naive_gap(rows)
    assert g["fmr_ratio"] == pytest.approx(want_fmr) if want_fmr is not None else g["fmr_ratio"] is None
    assert g["fnmr_ratio"] == pytest.approx(want_fnmr) if want_fnmr is not None else g["fnmr_ratio"] is None
    assert g["zero_counts"]["fmr"] == sorted(p for p, r in rows.items() if r[1] and r[0] == 0)


def test_gap_names_the_extremes() -> None:
    g = gap({"korean": counted(12, 3000, 300, 1500), "lfw": counted(3, 3000, 150, 3000)})
    assert g["fmr_ratio"] == pytest.approx(4.0) and g["fnmr_ratio"] == pytest.approx(4.0)
    assert (g["fmr_highest"], g["fmr_lowest"]) == ("korean", "lfw")
    assert g["zero_counts"] == {"fmr": [], "fnmr": []} and g["lower_bound"] == {"fmr": False, "fnmr": False}


def test_a_small_population_without_errors_is_never_the_worst() -> None:
    big = counted(1, 1000, 2, 1000)
    g = gap({"small": counted(0, 10, 0, 10), "big": big})
    assert g["fmr_highest"] == "big" and g["fmr_ratio"] == pytest.approx(1.0) and not g["lower_bound"]["fmr"]
    g = gap({"small": counted(0, 100000, 0, 10), "big": big})  # now the lowest, and the ratio a lower bound
    assert (g["fmr_highest"], g["fmr_lowest"]) == ("big", "small") and g["lower_bound"]["fmr"]
    assert g["fmr_ratio"] == pytest.approx(0.001 / 1e-5)


def test_population_section_pools_benchmarks_and_handles_many_populations(tmp_path) -> None:
    """Four benchmarks, two of them one population, two models: the section against a naive computation."""
    from types import SimpleNamespace

    from facefit.eval.report_suite import deltas_section, plot_det, plot_populations, population_section
    from facefit.eval.suite import BenchmarkRun, Suite, SuiteBenchmark, SuiteRun

    rng = np.random.default_rng(7)
    specs = [("ref", "west", 400), ("b1", "east", 150), ("b2", "east", 90), ("b3", "south", 60)]
    suite = Suite(reference="ref", fmr=0.01, benchmarks=[SuiteBenchmark(name=n, root=tmp_path, pairs=tmp_path,
                                                                       population=p) for n, p, _ in specs])
    runs, raw = [], {}
    for name, _, n in specs:
        same = rng.random(n) < 0.5
        models = []
        for k in range(2):
            shift = 0.1 * k + (0.15 if name != "ref" else 0.0)  # the other populations match more falsely
            dist = np.where(same, rng.normal(0.5, 0.1, n), rng.normal(1.0 - shift, 0.1, n)).round(3)
            models.append(SimpleNamespace(label=f"m{k}", distances=dist, metric="cosine"))
        raw[name] = (same, [m.distances for m in models])
        pairs = SimpleNamespace(pairs=[SimpleNamespace(same=bool(s)) for s in same])
        runs.append(BenchmarkRun(suite.benchmarks[len(runs)], SimpleNamespace(models=models, pairs=pairs),
                                 tmp_path, tmp_path))
    srun = SuiteRun(suite, runs, {})
    section = population_section(srun)
    assert list(section) == ["m0", "m1"]
    for k, label in enumerate(["m0", "m1"]):
        same, dists = raw["ref"]
        t = naive_threshold(dists[k][~same].tolist(), 0.01)
        p = section[label]
        assert p["threshold"] == t and p["reference_fmr"] <= 0.01
        assert list(p["by_population"]) == ["west", "east", "south"]
        for pop, names in (("west", ["ref"]), ("east", ["b1", "b2"]), ("south", ["b3"])):
            d = np.concatenate([raw[n][1][k] for n in names]).tolist()
            s = np.concatenate([raw[n][0] for n in names]).tolist()
            r = p["by_population"][pop]
            assert (r["fmr"], r["fnmr"]) == naive_rates(d, s, t)
            assert (r["n_pos"], r["n_neg"]) == (sum(s), len(s) - sum(s)) and r["benchmarks"] == names
        rows = {q: (r["false_matches"], r["n_neg"], r["false_non_matches"], r["n_pos"])
                for q, r in p["by_population"].items()}
        want_fmr, want_fnmr = naive_gap(rows)
        assert p["gap"]["fmr_ratio"] == pytest.approx(want_fmr) and p["gap"]["fnmr_ratio"] == pytest.approx(want_fnmr)
    benchmarks = {n: {"models": {f"m{k}": {"total": {"accuracy": 0.5 + 0.1 * k + i / 100, "auc": 0.9}}
                                 for k in range(2)}} for i, (n, _, _) in enumerate(specs)}
    deltas = deltas_section(benchmarks, section)
    assert list(deltas) == ["m1"] and deltas["m1"]["against"] == "m0"
    assert deltas["m1"]["benchmarks"]["b2"]["accuracy"] == pytest.approx(0.1)
    assert deltas["m1"]["benchmarks"]["b2"]["tar_at_far_1e-3"] is None  # missing on both: no delta
    for pop in ("west", "east", "south"):
        assert deltas["m1"]["populations"][pop]["fmr"] == pytest.approx(
            section["m1"]["by_population"][pop]["fmr"] - section["m0"]["by_population"][pop]["fmr"])
    doc = {"populations": section, "suite": {"fmr": 0.01, "reference": "ref"}}
    plot_populations(doc, tmp_path / "p.png")
    plot_det(srun, doc, tmp_path / "d.png")
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "d.png").stat().st_size > 1000
