"""`facefit eval --suite`: several benchmarks exactly as single evals, and FMR/FNMR per population."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from tests.eval.test_populations import naive_threshold

EXPRESSIONS = ("normal", "happy", "sad", "sleepy")


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """``facefit ARGS`` in this process (the models load once for the whole module)."""
    from facefit.cli.app import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, err
    return lines[0]


def yale_pairs(path: Path, subjects: list[str], *, diff: bool = True, same: bool = True) -> Path:
    """Same-person pairs (4 per subject) and one different-person pair per two subjects, in 2 folds."""
    rows, i = [], 0
    images = {s: [f"{s}/{s[-2:]}_{e}.png" for e in EXPRESSIONS] for s in subjects}
    if same:
        for s in subjects:
            for a, b in list(itertools.combinations(images[s], 2))[:4]:
                rows.append((a, b, 1, i % 2))
                i += 1
    if diff:
        for s, t in itertools.combinations(subjects, 2):
            rows.append((images[s][0], images[t][1], 0, i % 2))
            i += 1
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("path_a", "path_b", "same", "fold"))
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def yale_suite(yale_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two benchmarks on Yale (subjects 1-6, 7-12), populations 'first' and 'second'; the reference is the second."""
    d = tmp_path_factory.mktemp("suite")
    yale_pairs(d / "a.csv", [f"subject{i:02d}" for i in range(1, 7)])
    yale_pairs(d / "b.csv", [f"subject{i:02d}" for i in range(7, 13)])
    (d / "suite.yaml").write_text(f"reference: yale-b\nfmr: 0.05\nbenchmarks:\n"
                                  f"  - {{name: yale-a, root: {yale_dir}, pairs: a.csv, population: first}}\n"
                                  f"  - {{name: yale-b, root: {yale_dir}, pairs: b.csv, population: second}}\n")
    return d / "suite.yaml"


def test_suite_numbers_are_those_of_separate_evals(yale_suite: Path, yale_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    models = ["--model", "dlib-resnet", "--model", "sface"]
    out = tmp_path / "suite"
    code, stdout, err = cli(capsys, "eval", "--suite", yale_suite, "--out", out, *models)
    assert code == 0, err
    assert "populations at one threshold" in stdout and "yale-a" in stdout
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["benchmarks"]) == ["yale-a", "yale-b"]
    for name, pairs in (("yale-a", "a.csv"), ("yale-b", "b.csv")):
        single_dir = tmp_path / name
        code, _, err = cli(capsys, "eval", yale_dir, "--pairs", yale_suite.parent / pairs, "--out", single_dir,
                           *models)
        assert code == 0, err
        single = json.loads((single_dir / "metrics.json").read_text())
        bench = doc["benchmarks"][name]
        assert list(bench["models"]) == list(single["models"]) == ["dlib-resnet", "sface"]
        assert bench["pairs"]["sha256"] == single["pairs"]["sha256"]
        assert bench["data"]["sha256"] == single["data"]["sha256"]
        for label, m in single["models"].items():
            for part in ("total", "subgroups", "calibration"):
                assert_close(bench["models"][label][part], m[part], f"{name}.{label}.{part}")
        # The distances themselves, pair by pair.
        a, b = read_scores(out / f"scores-{name}.csv"), read_scores(single_dir / "scores.csv")
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    # The shared threshold and the per-population rates, recomputed naively from the exact distances (the
    # cache makes this a look-up).
    from facefit import create_model
    from facefit.data.pairs import read_pairs
    from facefit.eval.run import EvalOptions, evaluate
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache

    exact = {}
    with EvalCache(cache_dir() / "eval-cache.sqlite") as store:
        for name, pairs in (("yale-a", "a.csv"), ("yale-b", "b.csv")):
            run = evaluate(read_pairs(yale_suite.parent / pairs, yale_dir),
                           [("dlib-resnet", create_model("dlib-resnet")), ("sface", create_model("sface"))],
                           EvalOptions(metric="auto"), store)
            assert all(m.embedded_now == 0 for m in run.models)  # the same cache: nothing embedded again
            exact[name] = ([p.same for p in run.pairs.pairs], [m.distances.tolist() for m in run.models])
    for k, label in enumerate(["dlib-resnet", "sface"]):
        p = doc["populations"][label]
        same, dists = exact["yale-b"]
        t = naive_threshold([d for d, s in zip(dists[k], same) if not s], 0.05)
        assert p["threshold"] == t
        assert p["reference"] == "yale-b" and p["fmr_target"] == 0.05
        assert set(p["by_population"]) == {"first", "second"}
        rates = {}
        for pop, name in (("first", "yale-a"), ("second", "yale-b")):
            same, dists = exact[name]
            neg = [d for d, s in zip(dists[k], same) if not s]
            pos = [d for d, s in zip(dists[k], same) if s]
            r = p["by_population"][pop]
            assert (r["n_pos"], r["n_neg"]) == (len(pos), len(neg))
            assert r["fmr"] == sum(d <= t for d in neg) / len(neg)
            assert r["fnmr"] == sum(d > t for d in pos) / len(pos)
            assert r["benchmarks"] == [name]
            rates[pop] = r
        assert p["reference_fmr"] <= 0.05
        fm = [max(rates[q]["false_matches"], 1) / rates[q]["n_neg"] for q in rates]
        if any(rates[q]["false_matches"] for q in rates):
            assert p["gap"]["fmr_ratio"] == pytest.approx(max(fm) / min(fm))
    d = doc["deltas"]["sface"]
    assert d["against"] == "dlib-resnet"
    for name in ("yale-a", "yale-b"):
        m = doc["benchmarks"][name]["models"]
        assert d["benchmarks"][name]["accuracy"] == pytest.approx(m["sface"]["total"]["accuracy"]
                                                                  - m["dlib-resnet"]["total"]["accuracy"])
    pops = doc["populations"]
    assert d["populations"]["first"]["fnmr"] == pytest.approx(pops["sface"]["by_population"]["first"]["fnmr"]
                                                              - pops["dlib-resnet"]["by_population"]["first"]["fnmr"])
    report = (out / "report.md").read_text()
    for heading in ("## Benchmarks × models", "## Populations at one threshold", "## The gap before and after",
                    "populations.png", "det.png"):
        assert heading in report
    assert (out / "populations.png").stat().st_size > 1000 and (out / "det.png").stat().st_size > 1000


def read_scores(path: Path) -> np.ndarray:
    """scores.csv as columns: same, distance of each model (in order)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    cols = [k for k in rows[0] if k.startswith("distance_")]
    return np.array([[float(r["same"])] + [float(r[c]) for c in cols] for r in rows])


def assert_close(a: object, b: object, where: str) -> None:
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), where
        for k in b:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(b, float):
        assert isinstance(a, float) and abs(a - b) <= 1e-9, (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_bad_suites_are_one_line_errors_naming_file_and_key(yale_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    yale_pairs(tmp_path / "a.csv", ["subject01", "subject02", "subject03"])
    yale_pairs(tmp_path / "same_only.csv", ["subject04", "subject05"], diff=False)
    ok = f"{{name: a, root: {yale_dir}, pairs: a.csv}}"
    cases = {
        "unknown top key": (f"benchmarks: [{ok}]\nthreshold: 0.5\n", "threshold: unknown key"),
        "internal name as a key": (f"benchmarks: [{ok}]\nsource: x.yaml\n", "source: unknown key"),
        "unknown benchmark key": (f"benchmarks:\n  - {{name: a, root: {yale_dir}, pairs: a.csv, popul: x}}\n",
                                  "benchmarks[0].popul: unknown key"),
        "missing pairs": (f"benchmarks:\n  - {{name: a, root: {yale_dir}}}\n", "benchmarks[0].pairs: missing"),
        "missing root": ("benchmarks:\n  - {name: a, pairs: a.csv}\n", "benchmarks[0].root: missing"),
        "nothing at all": ("benchmarks:\n  - {name: a}\n", "benchmarks[0].root: missing"),
        "bin and root": (f"benchmarks:\n  - {{name: a, bin: a.csv, root: {yale_dir}}}\n",
                         "benchmarks[0].root: not with 'bin'"),
        "missing name": (f"benchmarks:\n  - {{root: {yale_dir}, pairs: a.csv}}\n", "benchmarks[0].name: missing"),
        "duplicate name": (f"benchmarks: [{ok}, {ok}]\n", "benchmarks[1].name: 'a' is already the name of "
                                                          "benchmarks[0]"),
        "unknown reference": (f"reference: lfw\nbenchmarks: [{ok}]\n", "reference: 'lfw' is not a benchmark"),
        "bad fmr": (f"fmr: 2\nbenchmarks: [{ok}]\n", "fmr: Input should be less than 1"),
        "missing path": (f"benchmarks:\n  - {{name: a, root: {yale_dir}, pairs: nowhere.csv}}\n",
                         "benchmarks[0].pairs: "),
        "missing root folder": ("benchmarks:\n  - {name: a, root: no/such/folder, pairs: a.csv}\n",
                                "benchmarks[0].root: "),
        "no benchmarks": ("benchmarks: []\n", "benchmarks: List should have at least 1 item"),
        "not a mapping": ("- a\n- b\n", "a suite must be a mapping"),
        "population without negatives": (
            f"benchmarks:\n  - {ok}\n  - {{name: b, root: {yale_dir}, pairs: same_only.csv, population: p2}}\n",
            "benchmarks[1].population: population 'p2' has no different-person pairs"),
    }
    for what, (text, expected) in cases.items():
        suite = tmp_path / f"{what.replace(' ', '_')}.yaml"
        suite.write_text(text)
        code, _, err = cli(capsys, "eval", "--suite", suite, "--out", tmp_path / "never")
        line = one_line_error(err)
        assert code == 2, (what, err)
        assert str(suite) in line and expected in line, (what, line)
        if what.startswith("missing path"):
            assert "nowhere.csv: no such file" in line
    assert not (tmp_path / "never").exists()
    code, _, err = cli(capsys, "eval", "--suite", tmp_path / "absent.yaml", "--out", tmp_path / "never")
    assert code == 2 and "absent.yaml: no such suite file" in one_line_error(err)
    code, _, err = cli(capsys, "eval", yale_dir, "--suite", tmp_path / "a.yaml", "--out", tmp_path / "never")
    assert code == 2 and "leave out ROOT" in one_line_error(err)


@pytest.mark.slow
def test_suite_korean_val_and_lfw_equal_two_separate_evals(data_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """The bar on the real benchmarks: the Korean validation pairs and LFW, each as its own `facefit eval`."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"reference: lfw\nbenchmarks:\n"
                     f"  - {{name: korean-val, root: {data_root}/kfamily/val, pairs: {data_root}/kfamily/val_pairs.csv,"
                     f" population: korean}}\n"
                     f"  - {{name: lfw, root: {data_root}/lfw/images, pairs: {data_root}/lfw/pairs.txt}}\n")
    out = tmp_path / "suite-out"
    code, _, err = cli(capsys, "eval", "--suite", suite, "--out", out, "--model", "sface")
    assert code == 0, err
    doc = json.loads((out / "metrics.json").read_text())
    for name, root, pairs in (("korean-val", "kfamily/val", "kfamily/val_pairs.csv"),
                              ("lfw", "lfw/images", "lfw/pairs.txt")):
        code, _, err = cli(capsys, "eval", data_root / root, "--pairs", data_root / pairs, "--out", tmp_path / name,
                           "--model", "sface")
        assert code == 0, err
        single = json.loads((tmp_path / name / "metrics.json").read_text())
        for part in ("total", "subgroups", "calibration"):
            assert_close(doc["benchmarks"][name]["models"]["sface"][part], single["models"]["sface"][part], part)
    p = doc["populations"]["sface"]
    assert set(p["by_population"]) == {"korean", "lfw"}
    assert p["by_population"]["lfw"]["n_neg"] == 3000 and p["reference_fmr"] <= 1e-3


def test_card_records_the_suite_and_train_checks_it_first(yale_suite: Path, johns_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """`facefit card RUN --suite` on a run folder (here a saved copy of dlib-resnet whose card names sface as its
    base): the section is written once and replaced on a second call; the JSON gets metadata.suite."""
    from facefit import create_model, save_model
    from facefit.train.card import BEGIN, END

    run_dir = tmp_path / "run-x"
    save_model(create_model("dlib-resnet"), run_dir / "model", metadata={"card": {"base": "sface"}})
    (run_dir / "model" / "MODEL_CARD.md").write_text("# run-x\n\nTrained on something.\n")
    for _ in range(2):
        code, stdout, err = cli(capsys, "card", run_dir, "--suite", yale_suite)
        assert code == 0, err
    text = (run_dir / "model" / "MODEL_CARD.md").read_text()
    assert text.startswith("# run-x\n\nTrained on something.\n")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "reference `yale-b` (forgetting)" in text and "### Populations at one threshold" in text
    meta = json.loads((run_dir / "model" / "facefit-model.json").read_text())["metadata"]
    s = meta["suite"]
    assert meta["card"] == {"base": "sface"} and s["base"] == "sface" and s["model"] == "run-x"
    doc = json.loads((run_dir / "suite" / "metrics.json").read_text())
    assert list(doc["populations"]) == ["sface", "run-x"]
    for label in ("sface", "run-x"):
        assert s["populations"][label]["gap"] == doc["populations"][label]["gap"]
        assert s["populations"][label]["threshold"] == doc["populations"][label]["threshold"]
    ref = doc["benchmarks"]["yale-b"]["models"]
    assert s["reference_change"]["accuracy"] == pytest.approx(ref["run-x"]["total"]["accuracy"]
                                                              - ref["sface"]["total"]["accuracy"])
    create_model(str(run_dir))  # still a valid model folder

    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks: []\n")
    code, _, err = cli(capsys, "card", run_dir, "--suite", bad)
    assert code == 2 and f"{bad}: benchmarks:" in one_line_error(err)
    code, _, err = cli(capsys, "card", tmp_path, "--suite", yale_suite)
    assert code == 2 and "not a training run or model folder" in one_line_error(err)
    code, _, err = cli(capsys, "train", johns_dir, "--out", tmp_path / "new-run", "--report-suite", bad)
    assert code == 2 and f"{bad}: benchmarks:" in one_line_error(err)
    assert not (tmp_path / "new-run").exists()  # checked before any training


def test_bench_eval_times_a_cold_then_a_warm_cache(yale_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    yale_pairs(tmp_path / "tiny.csv", ["subject13", "subject14", "subject15"])
    suite = tmp_path / "tiny.yaml"
    suite.write_text(f"benchmarks:\n  - {{name: tiny, root: {yale_dir}, pairs: tiny.csv}}\n")
    code, stdout, err = cli(capsys, "bench", "eval", "--suite", suite, "--model", "dlib-resnet", "--out",
                            tmp_path / "bench.json")
    assert code == 0, err
    assert "suite evaluation wall time" in stdout
    cold, warm = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert (cold["cache"], warm["cache"]) == ("cold", "warm")
    assert cold["n_images"] == warm["n_images"] == 12 and cold["n_pairs"] == 15
    assert cold["detected"] == 12 and cold["embedded"] == 12  # from empty: every image
    assert warm["detected"] == 0 and warm["embedded"] == 0  # all from the cache
    assert warm["seconds"] > 0 and set(cold["per_benchmark"]) == {"tiny"}


def test_the_demo_suite_is_the_demos_benchmarks(data_root: Path) -> None:
    """suites/demo.yaml (make demo) reads the shared data beside the clone, like the demo's own default."""
    from facefit.demo import demo_suite
    from facefit.eval.suite import load_suite

    repo = Path(__file__).resolve().parents[2]
    if data_root.resolve() != (repo.parent / "shared" / "data").resolve():
        pytest.skip("the data folder is not ../shared/data, which suites/demo.yaml reads")
    shipped = load_suite(repo / "suites" / "demo.yaml")
    built = demo_suite(data_root, lfw=True)
    assert built is not None
    assert shipped.reference_name == built.reference_name == "lfw" and shipped.fmr == built.fmr == 1e-3
    assert [(b.name, b.population_label) for b in shipped.benchmarks] == \
        [(b.name, b.population_label) for b in built.benchmarks] == [("korean-val", "korean"), ("lfw", "lfw")]
    assert [(b.root.resolve(), b.pairs.resolve()) for b in shipped.benchmarks] == \
        [(b.root.resolve(), b.pairs.resolve()) for b in built.benchmarks]


def test_a_bin_benchmark_is_evaluated_as_eval_of_the_bin(yale_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """An insightface .bin in a suite (relative to the suite file) gives the numbers of `facefit eval X.bin`."""
    from facefit.data.insightface import write_bin

    rows = list(csv.reader(yale_pairs(tmp_path / "p.csv", ["subject13", "subject14", "subject15"]).open()))[1:]
    import cv2

    from facefit.io import load_image

    # .bin sets hold JPEG bytes; the Yale files are GIFs named .png.
    images = [cv2.imencode(".jpg", load_image(yale_dir / p))[1].tobytes() for a, b, _, _ in rows for p in (a, b)]
    (tmp_path / "sets").mkdir()
    write_bin(tmp_path / "sets" / "yale.bin", images, [s == "1" for _, _, s, _ in rows])
    suite = tmp_path / "s.yaml"
    suite.write_text("benchmarks:\n  - {name: yale-bin, bin: sets/yale.bin, population: yale}\n")
    code, _, err = cli(capsys, "eval", "--suite", suite, "--out", tmp_path / "suite", "--model", "dlib-resnet")
    assert code == 0, err
    code, _, err = cli(capsys, "eval", tmp_path / "sets" / "yale.bin", "--out", tmp_path / "single", "--model",
                       "dlib-resnet")
    assert code == 0, err
    doc = json.loads((tmp_path / "suite" / "metrics.json").read_text())
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert doc["suite"]["benchmarks"][0]["bin"] == str(tmp_path / "sets" / "yale.bin")
    for part in ("total", "subgroups", "calibration"):
        assert_close(doc["benchmarks"]["yale-bin"]["models"]["dlib-resnet"][part],
                     single["models"]["dlib-resnet"][part], part)
    assert doc["populations"]["dlib-resnet"]["by_population"]["yale"]["n_neg"] == 3
    assert "deltas" not in doc  # one model: nothing to compare


def test_train_with_report_suite_writes_the_card_after_training(yale_suite: Path, johns_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`facefit train ... --report-suite`: after the run (a stand-in that exports a copy of its base), the suite
    runs on the model and its base and the card gets its section."""
    from types import SimpleNamespace

    import facefit.train.loop
    from facefit import create_model, save_model

    def fake_train(cfg, run_dir: Path, **_):
        model_dir = save_model(create_model(cfg.base), run_dir / "model", metadata={"card": {"base": cfg.base}})
        (model_dir / "MODEL_CARD.md").write_text("# fine-tuned\n")
        return SimpleNamespace(best={"accuracy": 0.9}, seconds=1.0, images_per_s=10.0, best_epoch=1,
                               model_dir=model_dir)

    monkeypatch.setattr(facefit.train.loop, "train", fake_train)
    run_dir = tmp_path / "run"
    code, _, err = cli(capsys, "train", johns_dir, "--out", run_dir, "--base", "dlib-resnet", "--report-suite",
                       yale_suite)
    assert code == 0, err
    meta = json.loads((run_dir / "model" / "facefit-model.json").read_text())["metadata"]["suite"]
    assert (meta["base"], meta["model"], meta["reference"]) == ("dlib-resnet", "run", "yale-b")
    assert "## Benchmarks, forgetting and the population gap" in (run_dir / "model" / "MODEL_CARD.md").read_text()
    assert (run_dir / "suite" / "report.md").is_file()
