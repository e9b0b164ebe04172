"""insightface .rec/.idx and .bin: read against hand-built files, round trips, hostile and broken input, import."""

from __future__ import annotations

import csv
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from tests.gallery.conftest import run_cli

from facefit.data.insightface import (
    MAGIC,
    FormatError,
    RecordFile,
    iter_rec_images,
    pack_record,
    read_bin,
    unpack_record,
    write_bin,
    write_rec,
)
from facefit.errors import FacefitError


@pytest.fixture(scope="module")
def johns_jpegs(johns_dir: Path) -> list[tuple[int, bytes]]:
    """(person label, JPEG bytes) of dlib's 55 real example chips, persons adjacent."""
    paths = sorted(johns_dir.glob("*/*.jpg"))
    persons = sorted({p.parent.name for p in paths})
    return [(persons.index(p.parent.name), p.read_bytes()) for p in paths]


def _frame(payload: bytes, cflag: int = 0) -> bytes:
    """One RecordIO frame, written straight from the format's description."""
    return struct.pack("<II", MAGIC, (cflag << 29) | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def _header(flag: int, label: float, labels: list[float] | None = None) -> bytes:
    head = struct.pack("<IfQQ", flag, label, 0, 0)
    return head + (np.asarray(labels, "<f4").tobytes() if labels else b"")


def test_reads_a_hand_built_insightface_rec(tmp_path: Path, johns_jpegs: list[tuple[int, bytes]]) -> None:
    items = johns_jpegs[:6]
    n = len(items) + 1
    people = sorted({lab for lab, _ in items})
    records = [_header(2, 0.0, [n, n + len(people)])]
    records += [_header(0, float(lab)) + data for lab, data in items]
    for lab in people:
        idx = [i + 1 for i, (la, _) in enumerate(items) if la == lab]
        records.append(_header(2, 0.0, [idx[0], idx[-1] + 1]))
    blob, offsets = b"", []
    for r in records:
        offsets.append(len(blob))
        blob += _frame(r)
    rec = tmp_path / "train.rec"
    rec.write_bytes(blob)
    rec.with_suffix(".idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))

    with RecordFile(rec) as f:
        got = list(iter_rec_images(f))
    assert [(g.label, g.data) for g in got] == items
    rec.with_suffix(".idx").unlink()  # the same answer from a sequential scan
    with RecordFile(rec) as f:
        assert [(g.label, g.data) for g in iter_rec_images(f)] == items


def test_glint_layout_without_header_record(tmp_path: Path, johns_jpegs: list[tuple[int, bytes]]) -> None:
    rec = tmp_path / "glint.rec"
    rec.write_bytes(b"".join(_frame(_header(0, float(lab)) + data) for lab, data in johns_jpegs[:4]))
    with RecordFile(rec) as f:
        assert [(g.label, g.data) for g in iter_rec_images(f)] == johns_jpegs[:4]


def test_label_arrays_take_their_first_value_as_the_class() -> None:
    head, payload = unpack_record(pack_record([7.0, 3.0], b"img"))
    assert head.flag == 2 and head.label == (7.0, 3.0) and payload == b"img"
    head, payload = unpack_record(pack_record(4.0, b"img"))
    assert head.flag == 0 and head.label == (4.0,)


def test_round_trip_splits_records_that_contain_the_magic_word(tmp_path: Path,
                                                               johns_jpegs: list[tuple[int, bytes]]) -> None:
    tricky = johns_jpegs[0][1][:64] + struct.pack("<I", MAGIC) + johns_jpegs[0][1][64:]
    tricky = tricky[: len(tricky) - len(tricky) % 4]
    assert tricky.index(struct.pack("<I", MAGIC)) % 4 == 0
    items = [(0, tricky), *johns_jpegs[1:]]
    assert write_rec(tmp_path / "t.rec", items) == len(items)
    raw = (tmp_path / "t.rec").read_bytes()
    flags = []
    pos = 0
    while pos < len(raw):
        _, lrec = struct.unpack_from("<II", raw, pos)
        flags.append(lrec >> 29)
        pos += 8 + (lrec & ((1 << 29) - 1))
        pos += -pos % 4
    assert 1 in flags and 3 in flags  # the tricky record was written in parts
    with RecordFile(tmp_path / "t.rec") as f:
        assert [(g.label, g.data) for g in iter_rec_images(f)] == items


def test_write_rec_refuses_scattered_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not adjacent"):
        write_rec(tmp_path / "x.rec", [(0, b"a"), (1, b"b"), (0, b"c")])


@pytest.mark.parametrize("damage", ["not-rec", "truncated", "bad-idx"])
def test_broken_rec_files_raise_a_named_format_error(tmp_path: Path, johns_jpegs, damage: str) -> None:
    rec = tmp_path / "train.rec"
    write_rec(rec, johns_jpegs[:3])
    if damage == "not-rec":
        rec.write_bytes(b"PK\x03\x04" + b"\0" * 100)
        rec.with_suffix(".idx").unlink()
    elif damage == "truncated":
        rec.write_bytes(rec.read_bytes()[:-500])
        rec.with_suffix(".idx").unlink()
    else:
        rec.with_suffix(".idx").write_text("0\t0\n1\t13\n2\tx\n")
    with pytest.raises(FormatError, match="train"):
        with RecordFile(rec) as f:
            list(iter_rec_images(f))


def test_bin_round_trip_and_folds(tmp_path: Path, johns_jpegs) -> None:
    images = [d for _, d in johns_jpegs[:40]]
    same = [i % 2 == 0 for i in range(20)]
    write_bin(tmp_path / "v.bin", images, same)
    got = read_bin(tmp_path / "v.bin")
    assert got.images == images and got.same.tolist() == same
    assert got.folds.tolist() == [i // 2 for i in range(20)]  # 10 contiguous folds


def test_bin_as_insightface_writes_it(tmp_path: Path, johns_jpegs) -> None:
    # insightface's sets are protocol-2 pickles with a numpy bool array (Python 2 era); read with encoding=bytes.
    images = [d for _, d in johns_jpegs[:4]]
    (tmp_path / "old.bin").write_bytes(pickle.dumps((images, np.array([True, False])), protocol=2))
    got = read_bin(tmp_path / "old.bin")
    assert got.same.tolist() == [True, False] and got.images == images


def test_hostile_bin_is_refused_without_running_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([Evil()], [True])))
    with pytest.raises(FormatError, match=r"evil\.bin.*refusing to load builtins\.print"):
        read_bin(tmp_path / "evil.bin")


@pytest.mark.parametrize("content", [b"", b"not a pickle", pickle.dumps({"a": 1}), pickle.dumps(([b"x"], [1]))])
def test_malformed_bins_raise_format_errors(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "m.bin").write_bytes(content)
    with pytest.raises(FormatError, match=r"m\.bin"):
        read_bin(tmp_path / "m.bin")


def test_import_rec_makes_identity_folders_and_reports_bad_records(tmp_path: Path, johns_jpegs) -> None:
    from facefit.data.folders import IdentityFolders

    items = list(johns_jpegs)
    items.insert(3, (items[3][0], b"\xff\xd8\xff" + b"garbage" * 10))  # a broken JPEG among person 0's
    write_rec(tmp_path / "train.rec", items)
    proc = run_cli("import", tmp_path / "train.rec", "--out", tmp_path / "faces")
    assert proc.returncode == 3, proc.stderr  # partial success, as embed reports it
    assert "train.rec#4" in proc.stderr and "1 of 56 records failed" in proc.stderr
    data = IdentityFolders.scan(tmp_path / "faces")
    assert len(data.persons) == 5 and sum(len(p.images) for p in data.persons) == 55
    copied = sorted(p.read_bytes() for person in data.persons for p in person.images)
    assert copied == sorted(d for _, d in johns_jpegs)
    assert (tmp_path / "faces" / "import-failures.tsv").is_file()


def test_import_skips_a_damaged_record_when_the_index_finds_the_next(tmp_path: Path, johns_jpegs) -> None:
    write_rec(tmp_path / "train.rec", johns_jpegs[:5])
    offsets = [int(line.split("\t")[1]) for line in (tmp_path / "train.idx").read_text().splitlines()]
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    raw[offsets[2]:offsets[2] + 4] = b"XXXX"  # record 2's magic word destroyed
    (tmp_path / "train.rec").write_bytes(bytes(raw))
    proc = run_cli("import", tmp_path / "train.rec", "--out", tmp_path / "faces")
    assert proc.returncode == 3
    assert "train.rec#2: no RecordIO record at byte" in proc.stderr
    got = sorted(p.read_bytes() for p in (tmp_path / "faces").rglob("*.jpg"))
    assert got == sorted(d for i, (_, d) in enumerate(johns_jpegs[:5]) if i != 1)  # key 2 = the second image


def test_import_refuses_a_non_empty_folder_and_unknown_files(tmp_path: Path, johns_jpegs) -> None:
    write_rec(tmp_path / "train.rec", johns_jpegs[:3])
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "keep.txt").write_text("mine")
    proc = run_cli("import", tmp_path / "train.rec", "--out", tmp_path / "faces")
    assert proc.returncode != 0 and "not empty" in proc.stderr
    assert (tmp_path / "faces" / "keep.txt").read_text() == "mine"
    (tmp_path / "x.zip").write_bytes(b"PK")
    proc = run_cli("import", tmp_path / "x.zip", "--out", tmp_path / "other")
    assert proc.returncode != 0 and "x.zip: expected an insightface .rec" in proc.stderr
    assert not (tmp_path / "other").exists()


def test_import_bin_refuses_undecodable_images_and_leaves_nothing(tmp_path: Path, johns_jpegs) -> None:
    images = [d for _, d in johns_jpegs[:4]]
    images[3] = b"\x89PNG\r\n\x1a\n broken"
    write_bin(tmp_path / "v.bin", images, [True, False])
    proc = run_cli("import", tmp_path / "v.bin", "--out", tmp_path / "v")
    assert proc.returncode != 0
    assert "v.bin: 1 of 4 images do not decode, e.g. image 3 (pair 1)" in proc.stderr
    assert not (tmp_path / "v").exists() and not list(tmp_path.glob(".v.*"))


def test_imported_bin_evaluates_like_the_chips_it_holds(tmp_path: Path, johns_jpegs) -> None:
    """A verification .bin of real faces -> pairs.csv + images -> facefit eval gives dlib-level accuracy."""
    rng = np.random.default_rng(0)
    labels = np.array([lab for lab, _ in johns_jpegs])
    images, same = [], []
    for k in range(40):
        i = int(rng.integers(len(labels)))
        pool = np.flatnonzero((labels == labels[i]) != (k % 2 == 1))
        j = int(rng.choice(pool[pool != i]))
        images += [johns_jpegs[i][1], johns_jpegs[j][1]]
        same.append(k % 2 == 0)
    write_bin(tmp_path / "johns.bin", images, same)
    assert run_cli("import", tmp_path / "johns.bin", "--out", tmp_path / "j").returncode == 0
    rows = list(csv.DictReader((tmp_path / "j" / "pairs.csv").open()))
    assert len(rows) == 40 and {r["fold"] for r in rows} == {str(f) for f in range(10)}
    proc = run_cli("eval", tmp_path / "j", "--pairs", tmp_path / "j" / "pairs.csv", "--out", tmp_path / "rep",
                   "--model", "dlib-resnet", "--detector", "auto", env={"FACEFIT_CACHE": tmp_path / "cache"})
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["models"]["dlib-resnet"]["total"]["accuracy"] >= 0.9
    # The .bin straight into eval: imported once into the cache, the same numbers.
    direct = run_cli("eval", tmp_path / "johns.bin", "--out", tmp_path / "rep2", "--model", "dlib-resnet",
                     "--detector", "auto", env={"FACEFIT_CACHE": tmp_path / "cache"})
    assert direct.returncode == 0, direct.stderr
    again = json.loads((tmp_path / "rep2" / "metrics.json").read_text())
    assert again["models"]["dlib-resnet"]["total"] == metrics["models"]["dlib-resnet"]["total"]
    assert len(list((tmp_path / "cache" / "imported").iterdir())) == 1
    with_pairs = run_cli("eval", tmp_path / "johns.bin", "--pairs", tmp_path / "j" / "pairs.csv", "--out",
                         tmp_path / "rep3")
    assert with_pairs.returncode != 0 and "holds its own pairs" in with_pairs.stderr


def test_train_on_a_rec_says_to_import_it(tmp_path: Path, johns_jpegs) -> None:
    write_rec(tmp_path / "train.rec", johns_jpegs[:3])
    proc = run_cli("train", tmp_path / "train.rec", "--out", tmp_path / "run")
    assert proc.returncode != 0
    assert "an insightface .rec file, not a folder; convert it first with 'facefit import" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_import_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(FacefitError, match="no such file"):
        from facefit.data.convert import import_insightface

        import_insightface(tmp_path / "missing.rec", tmp_path / "o")


def _write_records(rec: Path, records: list[bytes], idx: bool = True) -> None:
    """Frame ``records`` into ``rec`` (and its ``.idx`` when ``idx``), straight from the format's description."""
    blob, offsets = b"", []
    for r in records:
        offsets.append(len(blob))
        blob += _frame(r)
    rec.write_bytes(blob)
    if idx:
        rec.with_suffix(".idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))


@pytest.mark.parametrize("idx", [True, False], ids=["idx", "no-idx"])
@pytest.mark.parametrize(("header", "reason"), [
    ((3e9, 3e9 + 5), "header announces 2999999999 images but the (index|file)"),  # used to loop over 3e9 keys
    ((float("nan"), 5.0), r"header range \(nan, 5\)"),
    ((-5.0, 3.0), r"header range \(-5, 3\)"),
], ids=["huge", "nan", "negative"])
def test_a_header_range_the_file_cannot_hold_is_refused_at_once(tmp_path: Path, johns_jpegs, idx: bool,
                                                                 header: tuple[float, float], reason: str) -> None:
    records = [_header(2, 0.0, list(header))] + [_header(0, float(lab)) + data for lab, data in johns_jpegs[:3]]
    _write_records(tmp_path / "train.rec", records, idx=idx)

    def no_damage(key: int, why: str) -> None:  # fail fast rather than collect a failure per announced key
        raise AssertionError(f"record {key} reported as damaged: {why}")

    with pytest.raises(FormatError, match=rf"train\.rec record 0: {reason}"):
        with RecordFile(tmp_path / "train.rec") as f:
            list(iter_rec_images(f, on_error=no_damage))


@pytest.mark.parametrize("idx", [True, False], ids=["idx", "no-idx"])
@pytest.mark.parametrize("label", [float("nan"), -3.0, 2.5])
def test_import_reports_an_image_with_a_bad_label_and_goes_on(tmp_path: Path, johns_jpegs, idx: bool,
                                                              label: float) -> None:
    items = johns_jpegs[:4]
    records = [_header(0, float(lab)) + data for lab, data in items]
    records[1] = _header(0, label) + items[1][1]
    _write_records(tmp_path / "train.rec", records, idx=idx)
    proc = run_cli("import", tmp_path / "train.rec", "--out", tmp_path / "faces")
    assert proc.returncode == 3, proc.stderr
    assert f"train.rec#1: label {label:g} is not a class id" in proc.stderr
    got = sorted(p.read_bytes() for p in (tmp_path / "faces").rglob("*.jpg"))
    assert got == sorted(d for i, (_, d) in enumerate(items) if i != 1)


@pytest.mark.parametrize(("idx_bytes", "message"), [
    (b"0\t0\n\xff\xfe\n", r"train\.idx:2: not text \(byte 0xff\)"),
    (b"0\t0\n1\t-8\n", r"train\.idx:2: negative byte offset -8"),
], ids=["binary", "negative"])
def test_unreadable_idx_lines_are_named(tmp_path: Path, johns_jpegs, idx_bytes: bytes, message: str) -> None:
    write_rec(tmp_path / "train.rec", johns_jpegs[:3])
    (tmp_path / "train.idx").write_bytes(idx_bytes)
    with pytest.raises(FormatError, match=message):
        RecordFile(tmp_path / "train.rec")


def test_idx_offset_past_any_file_is_a_damaged_record(tmp_path: Path, johns_jpegs) -> None:
    write_rec(tmp_path / "train.rec", johns_jpegs[:3])
    lines = (tmp_path / "train.idx").read_text().splitlines()
    lines[2] = f"2\t{2 ** 70}"  # more than seek() takes
    (tmp_path / "train.idx").write_text("\n".join(lines) + "\n")
    failures: list[tuple[int, str]] = []
    with RecordFile(tmp_path / "train.rec") as f:
        got = list(iter_rec_images(f, on_error=lambda key, why: failures.append((key, why))))
    assert [g.key for g in got] == [1, 3] and failures == [(2, f"{f.path}: truncated record at byte {2 ** 70}")]


@pytest.mark.parametrize(("loaded", "message"), [
    (([b"a"] * 12, [[1, 2], [3], 1, 1, 1, 1]), r"issame\[0\] is \[1, 2\], expected a boolean"),
    (([b"a"] * 12, ["x", "y", "z", "w", "v", "u"]), r"issame\[0\] is 'x', expected a boolean"),
    (([b"a"] * 4, [1, 2]), r"issame\[1\] is 2, expected a boolean"),
    (([b"a"] * 4, [1.0, 0.0]), r"issame\[0\] is 1\.0, expected a boolean"),
    (([b"a"] * 4, None), "expected issame to be a list of booleans, got NoneType"),
    (([b"a"] * 4, np.array([[True], [False]])), r"issame has shape \(2, 1\)"),
    ((7, [True]), "expected a list of encoded images, got int"),
    (([], []), "holds no pairs, so there is nothing to evaluate"),
    (([b"a"] * 3, [True]), r"3 images for 1 pairs \(expected 2\)"),  # odd number of images
    (([b"a"] * 4, [True]), r"4 images for 1 pairs \(expected 2\)"),
], ids=["ragged", "strings", "int-2", "floats", "none", "2-d", "images-int", "empty", "odd-images", "too-few-flags"])
def test_bins_with_bad_pair_flags_are_refused(tmp_path: Path, loaded: object, message: str) -> None:
    (tmp_path / "v.bin").write_bytes(pickle.dumps(loaded))
    with pytest.raises(FormatError, match=rf"v\.bin: {message}"):
        read_bin(tmp_path / "v.bin")


@pytest.mark.parametrize("issame", [[1, 0], np.array([1, 0]), np.array([1, 0], dtype=object),
                                    [np.bool_(True), np.bool_(False)]])
def test_bins_take_0_1_integers_as_pair_flags(tmp_path: Path, issame: object) -> None:
    (tmp_path / "v.bin").write_bytes(pickle.dumps(([b"a"] * 4, issame)))
    assert read_bin(tmp_path / "v.bin").same.tolist() == [True, False]


@pytest.mark.parametrize("command", ["import", "eval"])
def test_cli_refuses_a_ragged_bin_in_one_line(tmp_path: Path, johns_jpegs, command: str) -> None:
    images = [d for _, d in johns_jpegs[:12]]
    (tmp_path / "ragged.bin").write_bytes(pickle.dumps((images, [[1, 2], [3], 1, 1, 1, 1])))
    proc = run_cli(command, tmp_path / "ragged.bin", "--out", tmp_path / "out",
                   env={"FACEFIT_CACHE": tmp_path / "cache"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"facefit: error: {tmp_path / 'ragged.bin'}: issame[0] is [1, 2], expected a boolean (or 0/1)"]
    assert not (tmp_path / "out").exists()
