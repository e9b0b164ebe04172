"""Identity-disjoint pair generation on the real Korean family photos (125 persons, 1,211 images)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from facefit.data.attributes import pair_attributes
from facefit.data.folders import IdentityFolders, Person
from facefit.data.pairgen import PairPlan, make_pairs, pairs_to_csv
from facefit.data.pairs import read_pairs
from facefit.errors import FacefitError


@pytest.fixture(scope="module")
def kfamily(data_root: Path) -> IdentityFolders:
    return IdentityFolders.scan(data_root / "kfamily" / "val", metadata=data_root / "kfamily" / "val_metadata.csv")


@pytest.fixture(scope="module")
def plan(kfamily: IdentityFolders) -> PairPlan:
    return make_pairs(kfamily)


@pytest.fixture(scope="module")
def by_age_gap(kfamily: IdentityFolders) -> PairPlan:
    return make_pairs(kfamily, group_by="age_gap")


def owner(data: IdentityFolders) -> dict[Path, str]:
    return {img: p.name for p in data.persons for img in p.images}


def fold_of_person(plan: PairPlan) -> dict[str, int]:
    return {name: f for f, names in enumerate(plan.folds) for name in names}


@pytest.mark.parametrize("name", ["plan", "by_age_gap"])
def test_folds_are_identity_disjoint(name: str, request: pytest.FixtureRequest, kfamily: IdentityFolders) -> None:
    plan: PairPlan = request.getfixturevalue(name)
    who = owner(kfamily)
    assert sorted(n for f in plan.folds for n in f) == sorted(p.name for p in kfamily.persons)  # each exactly once
    assert all(len(f) >= 2 for f in plan.folds) and len(plan.folds) == 10
    seen: dict[str, set[int]] = defaultdict(set)
    for p in plan.pairs:
        seen[who[p.a]].add(p.fold)
        seen[who[p.b]].add(p.fold)
    assert all(len(folds) == 1 for folds in seen.values())
    assigned = fold_of_person(plan)
    assert all(assigned[person] == next(iter(folds)) for person, folds in seen.items())


@pytest.mark.parametrize("name", ["plan", "by_age_gap"])
def test_pairs_are_valid_and_unique(name: str, request: pytest.FixtureRequest, kfamily: IdentityFolders) -> None:
    plan: PairPlan = request.getfixturevalue(name)
    who = owner(kfamily)
    keys = [frozenset((p.a, p.b)) for p in plan.pairs]
    assert len(set(keys)) == len(keys)
    assert all(p.a != p.b for p in plan.pairs)
    assigned = fold_of_person(plan)
    for p in plan.pairs:
        assert (who[p.a] == who[p.b]) == p.same
        assert assigned[who[p.a]] == assigned[who[p.b]] == p.fold


def test_default_counts_are_exact_and_even(plan: PairPlan) -> None:
    assert plan.notes == []
    per_fold = Counter((p.fold, p.same) for p in plan.pairs)
    assert plan.n_pos == plan.n_neg == 3000
    assert set(per_fold.values()) == {300}


def test_requested_counts_split_evenly(kfamily: IdentityFolders) -> None:
    plan = make_pairs(kfamily, n_pos=1234, n_neg=777, seed=5)
    assert (plan.n_pos, plan.n_neg) == (1234, 777)
    for same, total in ((True, 1234), (False, 777)):
        counts = [sum(p.same == same and p.fold == f for p in plan.pairs) for f in range(10)]
        assert sum(counts) == total and max(counts) - min(counts) <= 1


def test_negatives_follow_positives_by_default(kfamily: IdentityFolders) -> None:
    plan = make_pairs(kfamily, n_pos=500)
    assert plan.n_pos == 500 and plan.n_neg == 500


def test_shortfall_takes_all_and_notes_it(kfamily: IdentityFolders) -> None:
    possible = sum(len(p.images) * (len(p.images) - 1) // 2 for p in kfamily.persons)
    plan = make_pairs(kfamily, n_pos=100_000, n_neg=500)
    assert plan.n_pos == possible and plan.n_neg == 500  # every same-person pair, none borrowed across folds
    assert len(plan.notes) == 10 and all("positive pairs possible, 10000 requested" in n for n in plan.notes)


def test_seed_determines_the_file(kfamily: IdentityFolders, plan: PairPlan) -> None:
    again = pairs_to_csv(make_pairs(kfamily, seed=0), kfamily)
    assert again == pairs_to_csv(plan, kfamily)
    other = make_pairs(kfamily, seed=1)
    assert pairs_to_csv(other, kfamily) != again
    assert other.folds != plan.folds


def test_folds_balance_images(kfamily: IdentityFolders, plan: PairPlan) -> None:
    size = {p.name: len(p.images) for p in kfamily.persons}
    per_fold = [sum(size[n] for n in names) for names in plan.folds]
    assert sum(per_fold) == 1211
    # Largest persons first, each to the lightest fold: here within the smallest person (8 images) of even.
    assert max(per_fold) - min(per_fold) <= min(size.values())


def test_stratified_positives_spread_evenly(kfamily: IdentityFolders, by_age_gap: PairPlan) -> None:
    for fold, names in enumerate(by_age_gap.folds):
        persons = [p for p in kfamily.persons if p.name in names]
        for same in (True, False):
            pool = Counter(_age_gap(kfamily, a, b) for a, b in _candidates(persons, same))
            got = Counter(p.attrs["age_gap"] for p in by_age_gap.pairs if p.fold == fold and p.same == same)
            assert sum(got.values()) == 300
            most = max(got.values())
            for value, n in pool.items():
                assert got[value] >= most - 1 or got[value] == n, (fold, same, value, got, pool)
    unstratified = Counter(p.attrs["age_gap"] for p in make_pairs(kfamily).pairs if p.same)
    stratified = Counter(p.attrs["age_gap"] for p in by_age_gap.pairs if p.same)
    assert stratified["0 (same class)"] > unstratified["0 (same class)"]  # rare same-class pairs were favoured


def _candidates(persons: list[Person], same: bool) -> list[tuple[Path, Path]]:
    if same:
        return [pair for p in persons for pair in itertools.combinations(p.images, 2)]
    return [(a, b) for p, q in itertools.combinations(persons, 2) for a in p.images for b in q.images]


def _age_gap(data: IdentityFolders, a: Path, b: Path) -> str:
    return pair_attributes(data.relative(a), data.relative(b))["age_gap"]


@pytest.mark.parametrize("group_by", [None, "age_gap"])
def test_sampling_without_listing_candidates(kfamily: IdentityFolders, monkeypatch: pytest.MonkeyPatch,
                                            group_by: str | None) -> None:
    """Big folds draw pairs instead of listing all of them; force that path on the real data."""
    import facefit.data.pairgen as pairgen

    monkeypatch.setattr(pairgen, "ENUMERATE_LIMIT", 0)
    monkeypatch.setattr(pairgen, "STRATIFY_ALL", 0)
    monkeypatch.setattr(pairgen, "OVERSAMPLE", 2)
    plan = make_pairs(kfamily, n_pos=1000, n_neg=2000, seed=7, group_by=group_by)
    assert (plan.n_pos, plan.n_neg) == (1000, 2000)
    who, assigned = owner(kfamily), fold_of_person(plan)
    assert len({frozenset((p.a, p.b)) for p in plan.pairs}) == 3000
    for p in plan.pairs:
        assert p.a != p.b and (who[p.a] == who[p.b]) == p.same
        assert assigned[who[p.a]] == assigned[who[p.b]] == p.fold
    negatives = Counter(who[x] for p in plan.pairs if not p.same for x in (p.a, p.b))
    assert len(negatives) == 125  # drawn across all persons, not stuck on a few
    assert plan.pairs == make_pairs(kfamily, n_pos=1000, n_neg=2000, seed=7, group_by=group_by).pairs


def test_group_by_metadata_attribute(kfamily: IdentityFolders) -> None:
    plan = make_pairs(kfamily, n_pos=400, n_neg=400, group_by="age_class")
    values = Counter(p.attrs["age_class"] for p in plan.pairs)
    assert set(values) <= set("abcdefgh") | {"mixed"}  # the metadata's letters, not the file name's "a (0-6)"
    assert len(values) >= 5


def test_csv_round_trip(kfamily: IdentityFolders, by_age_gap: PairPlan, tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(pairs_to_csv(by_age_gap, kfamily))
    assert path.read_text().splitlines()[0] == "path_a,path_b,same,fold,age_gap"
    loaded = read_pairs(path, kfamily.root)
    assert len(loaded) == len(by_age_gap.pairs) == 6000
    assert loaded.folds == list(range(10))
    want = Counter((p.a, p.b, p.same, p.fold, p.attrs["age_gap"]) for p in by_age_gap.pairs)
    assert Counter((p.a, p.b, p.same, p.fold, p.attrs["age_gap"]) for p in loaded.pairs) == want
    order = [(p.fold, not p.same) for p in loaded.pairs]
    assert order == sorted(order)


def test_single_image_persons_only_in_negatives(kfamily: IdentityFolders) -> None:
    trimmed = [Person(p.name, p.images[:1]) if i % 3 == 0 else p for i, p in enumerate(kfamily.persons)]
    data = IdentityFolders(kfamily.root, trimmed)
    singles = {p.images[0] for p in trimmed if len(p.images) == 1}
    plan = make_pairs(data, n_folds=5, n_pos=500, n_neg=2000)
    assert not any(p.a in singles or p.b in singles for p in plan.pairs if p.same)
    assert sum(p.a in singles or p.b in singles for p in plan.pairs if not p.same) > 100


def test_yale_conditions(yale_dir: Path) -> None:
    data = IdentityFolders.scan(yale_dir)
    plan = make_pairs(data, n_folds=5, group_by="condition")
    assert (plan.n_pos, plan.n_neg) == (675, 675)  # all 15 x 45 same-person pairs
    assert len(plan.folds) == 5 and all(len(f) == 3 for f in plan.folds)


def test_too_many_folds(kfamily: IdentityFolders) -> None:
    with pytest.raises(FacefitError, match=r"125 person\(s\) cannot fill 63 folds.*at most 62 fold"):
        make_pairs(kfamily, n_folds=63)
    assert len(make_pairs(kfamily, n_folds=62, n_pos=62, n_neg=62).folds) == 62


def test_unknown_group_attribute(kfamily: IdentityFolders) -> None:
    with pytest.raises(FacefitError, match=r"unknown attribute 'lighting'.*age, age_class, age_gap, family_role"):
        make_pairs(kfamily, group_by="lighting")


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACEFIT_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "facefit.cli.app", "pairs", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_writes_and_refuses_to_overwrite(data_root: Path, tmp_path: Path) -> None:
    root, out = data_root / "kfamily" / "val", tmp_path / "out" / "pairs.csv"
    proc = run_cli(root, "--out", out, "--folds", "5", "--pos", "500", "--neg", "500", "--group-by", "age_class",
                   "--metadata", data_root / "kfamily" / "val_metadata.csv", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "1000 pairs (500 same-person, 500 different-person) in 5" in proc.stderr
    assert f"facefit eval {root} --pairs {out} --out REPORT_DIR" in proc.stderr
    written = out.read_text()
    assert len(read_pairs(out, root)) == 1000
    proc = run_cli(root, "--out", out, "--folds", "4")
    assert proc.returncode != 0
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_text() == written
    proc = run_cli(root, "-o", out, "--folds", "4", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() != written


def test_cli_module_imports_stay_light() -> None:
    code = ("import sys, facefit.cli.pairs; "
            "print(sorted(m for m in ('numpy', 'torch', 'facefit.data.folders', 'facefit.data.pairgen') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
