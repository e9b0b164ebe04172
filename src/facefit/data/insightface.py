"""insightface's data formats, read and written without MXNet.

``train.rec`` (+ ``train.idx``) is MXNet RecordIO: each record is framed by a
magic word and a length word, padded to 4 bytes, and starts with an image
header ``IRHeader(flag, label, id, id2)``. In insightface's layout record 0 is
a header whose label array ``(a, b)`` says that records ``1..a-1`` are images
and ``a..b-1`` are one record per identity holding the range of its images;
newer sets (Glint360K) have a plain record 0 and each image carries its class.
Images are encoded (JPEG or PNG) 112x112 chips aligned to insightface's template.

``*.bin`` verification sets (``lfw.bin``, ``agedb_30.bin``, ...) are a pickle
of ``(images, issame)``: 2N encoded images and N booleans, pair ``i`` being
images ``2i`` and ``2i+1``. insightface scores them in 10 contiguous folds.
The pickle is read with an unpickler that builds only bytes, lists, tuples,
booleans and numpy arrays, so a hostile file cannot run code.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.errors import FacefitError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LEN_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2


class FormatError(FacefitError):
    """A file that is not the insightface format it claims to be."""


@dataclass(frozen=True)
class RecordHeader:
    flag: int
    label: tuple[float, ...]  # one value, or ``flag`` values when flag > 0
    id: int
    id2: int


def unpack_record(record: bytes, where: str = "record") -> tuple[RecordHeader, bytes]:
    """Split an image record into its header and payload (the encoded image)."""
    if len(record) < _HEADER.size:
        raise FormatError(f"{where}: {len(record)} bytes, shorter than an image header ({_HEADER.size})")
    flag, label, id1, id2 = _HEADER.unpack_from(record)
    rest = record[_HEADER.size:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise FormatError(f"{where}: header announces {flag} labels but the record ends first")
        labels = tuple(float(v) for v in np.frombuffer(rest[: 4 * flag], dtype="<f4"))
        rest = rest[4 * flag:]
    else:
        labels = (float(label),)
    return RecordHeader(flag, labels, id1, id2), rest


def pack_record(label: float | Iterable[float], payload: bytes, id1: int = 0, id2: int = 0) -> bytes:
    """An image record: header (with a label array when ``label`` is a sequence) + payload."""
    if isinstance(label, int | float):
        return _HEADER.pack(0, float(label), id1, id2) + payload
    values = np.asarray(list(label), dtype="<f4")
    return _HEADER.pack(len(values), 0.0, id1, id2) + values.tobytes() + payload


class RecordFile:
    """Read access to an MXNet RecordIO file, by position or (with its ``.idx``) by key."""

    def __init__(self, path: str | Path, idx: str | Path | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FacefitError(f"{self.path}: no such file")
        idx_path = Path(idx) if idx is not None else self.path.with_suffix(".idx")
        self.index: dict[int, int] | None = _read_idx(idx_path) if idx_path.is_file() else None
        self._f = self.path.open("rb")
        self.size = self.path.stat().st_size

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> RecordFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_at(self, offset: int) -> tuple[bytes, int]:
        """The record starting at byte ``offset`` and the offset of the next one."""
        parts: list[bytes] = []
        pos = offset
        while True:
            if not 0 <= pos <= self.size - 8:  # also keeps seek() from failing on offsets no file has
                raise FormatError(f"{self.path}: truncated record at byte {pos}")
            self._f.seek(pos)
            head = self._f.read(8)
            if len(head) < 8:
                raise FormatError(f"{self.path}: truncated record at byte {pos}")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise FormatError(f"{self.path}: no RecordIO record at byte {pos} (not a .rec file, or the .idx "
                                  f"does not belong to it)")
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            data = self._f.read(length)
            if len(data) < length:
                raise FormatError(f"{self.path}: record at byte {pos} is cut short ({len(data)} of {length} bytes)")
            parts.append(data)
            pos += 8 + length + (-length % 4)
            # cflag 0: a whole record; 1, 2, 3: first, middle and last part of one that contained the magic word,
            # which the writer cut out at each split.
            if cflag in (0, 3):
                break
            if cflag not in (1, 2):
                raise FormatError(f"{self.path}: bad record flag {cflag} at byte {pos}")
        return _MAGIC_BYTES.join(parts), pos

    def read(self, key: int) -> bytes:
        """The record with ``key`` (needs the ``.idx``)."""
        if self.index is None:
            raise FormatError(f"{self.path}: no index file ({self.path.with_suffix('.idx').name}) to look up keys")
        if key not in self.index:
            raise FormatError(f"{self.path}: no record with key {key}")
        return self.read_at(self.index[key])[0]

    def __iter__(self) -> Iterator[bytes]:
        """Every record, in file order."""
        pos = 0
        while pos < self.size:
            record, pos = self.read_at(pos)
            yield record


def _read_idx(path: Path) -> dict[int, int]:
    """``key -> byte offset`` from a ``.idx``; a line that is not two numbers names the file and line."""
    index: dict[int, int] = {}
    # Read as bytes and decode line by line, so a binary file is reported at its first bad line.
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{path}:{n}: not text (byte 0x{raw[exc.start]:02x}); expected 'key<TAB>offset' "
                              f"lines") from None
        if not line.strip():
            continue
        try:
            key, offset = line.split("\t")
            index[int(key)] = int(offset)
        except ValueError:
            raise FormatError(f"{path}:{n}: expected 'key<TAB>offset', got {line[:60]!r}") from None
        if index[int(key)] < 0:
            raise FormatError(f"{path}:{n}: negative byte offset {offset.strip()}")
    return index


@dataclass(frozen=True)
class RecImage:
    key: int  # record key (or position when there is no index)
    label: int  # class (person) id
    data: bytes  # the encoded image


def _class_id(head: RecordHeader, where: str) -> int:
    """The record's class: its first label, which must be a whole number >= 0."""
    value = head.label[0]
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise FormatError(f"{where}: label {value:g} is not a class id (a whole number >= 0)")
    return int(value)


def _image_end(head: RecordHeader, rec: RecordFile, where: str) -> int:
    """``a`` of a header record's ``(a, b)`` (images are records 1 .. a-1), checked against what the file holds.

    A corrupt header would otherwise have us look up billions of missing keys, one failure each.
    """
    a, b = head.label[0], head.label[1]
    if not (all(math.isfinite(v) and v == int(v) for v in (a, b)) and 1 <= a <= b):
        raise FormatError(f"{where}: header range ({a:g}, {b:g}) is not two whole numbers 1 <= a <= b")
    n = int(a) - 1
    if rec.index is not None and n > len(rec.index) - 1:
        raise FormatError(f"{where}: header announces {n} images but the index lists only "
                          f"{len(rec.index)} records")
    smallest = 8 + _HEADER.size  # frame + image header, no image at all
    if n * smallest > rec.size:
        raise FormatError(f"{where}: header announces {n} images but the file ({rec.size} bytes) "
                          f"holds at most {rec.size // smallest}")
    return int(a)


def iter_rec_images(rec: RecordFile,
                    on_error: Callable[[int, str], None] | None = None) -> Iterator[RecImage]:
    """The labelled images of an insightface ``.rec``, in either of its layouts.

    A damaged record (cut short, bad label, or with an index one that cannot be read) is passed to
    ``on_error(key, reason)`` when given and skipped, otherwise raised. Without an index a broken frame
    is always raised: there is no way to find the next record. So is a header record that does not fit.
    """
    def damaged(key: int, exc: FormatError) -> None:
        if on_error is None:
            raise exc
        on_error(key, str(exc))

    if rec.index is not None and 0 in rec.index:
        first, _ = unpack_record(rec.read(0), f"{rec.path} record 0")
        if first.flag > 0 and len(first.label) >= 2:
            # insightface's header record: images are keys 1 .. label[0]-1.
            for key in range(1, _image_end(first, rec, f"{rec.path} record 0")):
                where = f"{rec.path} record {key}"
                try:
                    head, payload = unpack_record(rec.read(key), where)
                    label = _class_id(head, where)
                except FormatError as exc:
                    damaged(key, exc)
                    continue
                yield RecImage(key, label, payload)
            return
    n_images: int | None = None  # set by a header record: images are records 1 .. n_images-1
    for pos, record in enumerate(rec):
        where = f"{rec.path} record {pos}"
        try:
            head, payload = unpack_record(record, where)
        except FormatError as exc:
            damaged(pos, exc)  # the frame was whole, so the next record is still found
            continue
        if pos == 0 and head.flag > 0 and len(head.label) >= 2 and not payload:
            n_images = _image_end(head, rec, where)
            continue
        if n_images is not None and pos >= n_images:
            return  # the identity records that follow carry no image
        try:
            label = _class_id(head, where)
        except FormatError as exc:
            damaged(pos, exc)
            continue
        yield RecImage(pos, label, payload)


def write_rec(path: str | Path, images: Iterable[tuple[int, bytes]]) -> int:
    """Write ``(label, encoded image)`` items as an insightface ``.rec`` + ``.idx``; returns the image count.

    The layout is insightface's: a header record, the images, then one record per
    identity with the range of its images (so images of one label must be adjacent).
    """
    path = Path(path)
    items = list(images)
    ranges: dict[int, list[int]] = {}
    for i, (label, _) in enumerate(items, start=1):
        r = ranges.get(int(label))
        if r is None:
            ranges[int(label)] = [i, i + 1]
        elif r[1] != i:
            raise ValueError(f"images of label {label} are not adjacent (image {i})")
        else:
            r[1] = i + 1
    n = len(items) + 1
    records: list[bytes] = [pack_record((float(n), float(n + len(ranges))), b"")]
    records += [pack_record(float(label), data, id1=i) for i, (label, data) in enumerate(items, start=1)]
    records += [pack_record((float(a), float(b)), b"") for _, (a, b) in sorted(ranges.items())]
    with path.open("wb") as f, path.with_suffix(".idx").open("w") as idx:
        for key, record in enumerate(records):
            idx.write(f"{key}\t{f.tell()}\n")
            _write_framed(f, record)
    return len(items)


def _write_framed(f: io.BufferedWriter, record: bytes) -> None:
    # Split wherever the magic word sits at a 4-byte boundary, as dmlc's writer does, so a reader that
    # scans for the magic word never mistakes image bytes for a record start.
    cuts = [i for i in range(0, len(record) - 3, 4) if record[i : i + 4] == _MAGIC_BYTES]
    pieces, start = [], 0
    for c in cuts:
        pieces.append(record[start:c])
        start = c + 4
    pieces.append(record[start:])
    for k, piece in enumerate(pieces):
        cflag = 0 if len(pieces) == 1 else 1 if k == 0 else 3 if k == len(pieces) - 1 else 2
        f.write(struct.pack("<II", MAGIC, (cflag << 29) | len(piece)))
        f.write(piece)
        f.write(b"\x00" * (-len(piece) % 4))


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


@dataclass
class BinPairs:
    images: list[bytes]  # 2N encoded images
    same: np.ndarray  # (N,) bool

    @property
    def folds(self) -> np.ndarray:
        """insightface's 10 contiguous folds over the pairs."""
        n = len(self.same)
        return (np.arange(n) * 10 // max(n, 1)).astype(np.int64)


def read_bin(path: str | Path) -> BinPairs:
    """An insightface verification ``.bin``: (2N encoded images, N same/different flags)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            loaded = _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise FacefitError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise FormatError(f"{path}: not an insightface verification .bin ({exc})") from None
    if not (isinstance(loaded, tuple | list) and len(loaded) == 2):
        raise FormatError(f"{path}: expected a pickled (images, issame) pair, got {type(loaded).__name__}")
    images, issame = loaded
    if not isinstance(images, list | tuple | np.ndarray):
        raise FormatError(f"{path}: expected a list of encoded images, got {type(images).__name__}")
    images = [bytes(b) if isinstance(b, bytearray | np.ndarray) else b for b in images]
    if not all(isinstance(b, bytes) for b in images):
        raise FormatError(f"{path}: the images are not encoded byte strings")
    same = _pair_flags(issame, path)
    if len(images) != 2 * len(same):
        raise FormatError(f"{path}: {len(images)} images for {len(same)} pairs (expected {2 * len(same)})")
    if not len(same):
        raise FormatError(f"{path}: holds no pairs, so there is nothing to evaluate")
    return BinPairs(images, same)


def _pair_flags(issame: object, path: Path) -> np.ndarray:
    """``issame`` as an (N,) bool array. Only booleans and 0/1 integers count: ``bool()`` of anything else
    (a string, a nested list) would quietly turn it into "same"."""
    if isinstance(issame, np.ndarray):
        if issame.ndim != 1:
            raise FormatError(f"{path}: issame has shape {issame.shape}, expected one flag per pair")
        if issame.dtype == bool:
            return issame.copy()
        values = issame.tolist()  # ints, or the Python objects of an object array
    elif isinstance(issame, list | tuple):
        values = list(issame)
    else:
        raise FormatError(f"{path}: expected issame to be a list of booleans, got {type(issame).__name__}")
    for i, v in enumerate(values):
        if not (isinstance(v, bool | np.bool_) or (isinstance(v, int | np.integer) and v in (0, 1))):
            raise FormatError(f"{path}: issame[{i}] is {v!r:.40}, expected a boolean (or 0/1)")
    return np.asarray(values, dtype=bool)


def write_bin(path: str | Path, images: list[bytes], same: Iterable[bool]) -> None:
    """Write a verification ``.bin`` that insightface's ``load_bin`` reads."""
    flags = [bool(s) for s in same]
    if len(images) != 2 * len(flags):
        raise ValueError(f"{len(images)} images for {len(flags)} pairs")
    with Path(path).open("wb") as f:
        pickle.dump((list(images), flags), f, protocol=4)


def image_suffix(data: bytes) -> str:
    """The file suffix for an encoded image, from its first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:2] == b"BM":
        return ".bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    raise FormatError("not a JPEG, PNG, BMP or WebP image")
