"""Cross-check facefit's insightface .rec reader and writer against MXNet's own RecordIO.

MXNet is not a facefit dependency (its last release wants numpy < 1.24), so this runs in a throw-away
environment beside the project:

    python3 -m venv /tmp/mxv && /tmp/mxv/bin/pip install "numpy<1.24" mxnet==1.9.1
    PYTHONPATH=src /tmp/mxv/bin/python docs/experiments/mxnet_interop.py ../shared/data/fixtures/johns

1. MXNet writes a .rec/.idx in insightface's layout (header record, images, identity records), with one
   image made to contain RecordIO's magic word; facefit reads it.
2. facefit writes one; MXNet reads every record back with its indexed reader and header unpacker.
Both must give back every image's bytes and label exactly.
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path


def main() -> None:
    import mxnet as mx

    from facefit.data.insightface import MAGIC, RecordFile, iter_rec_images, write_rec

    root = Path(sys.argv[1])
    paths = sorted(root.glob("*/*.jpg"))
    persons = sorted({p.parent.name for p in paths})
    items = [(persons.index(p.parent.name), p.read_bytes()) for p in paths]
    magic = struct.pack("<I", MAGIC)
    tricky = items[0][1][:64] + magic + items[0][1][64:]
    items[0] = (items[0][0], tricky[: len(tricky) - len(tricky) % 4])

    with tempfile.TemporaryDirectory() as tmp:
        rec, idx = Path(tmp) / "mx.rec", Path(tmp) / "mx.idx"
        w = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
        n = len(items) + 1
        ranges: dict[int, list[int]] = {}
        for i, (label, _) in enumerate(items, start=1):
            ranges.setdefault(label, [i, i + 1])[1] = i + 1
        w.write_idx(0, mx.recordio.pack(mx.recordio.IRHeader(2, [n, n + len(ranges)], 0, 0), b""))
        for i, (label, data) in enumerate(items, start=1):
            w.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0), data))
        for k, (_, (a, b)) in enumerate(sorted(ranges.items())):
            w.write_idx(n + k, mx.recordio.pack(mx.recordio.IRHeader(2, [a, b], 0, 0), b""))
        w.close()
        with RecordFile(rec) as f:
            got = [(g.label, g.data) for g in iter_rec_images(f)]
        assert got == items, "facefit read MXNet's file differently"
        idx.unlink()
        with RecordFile(rec) as f:  # without the index: a sequential scan
            assert [(g.label, g.data) for g in iter_rec_images(f)] == items
        print(f"facefit reads MXNet's .rec: {len(got)} images, labels and bytes identical (with and without .idx)")

        ours = Path(tmp) / "ours.rec"
        write_rec(ours, items)
        r = mx.recordio.MXIndexedRecordIO(str(ours.with_suffix(".idx")), str(ours), "r")
        header, _ = mx.recordio.unpack(r.read_idx(0))
        back = []
        for key in range(1, int(header.label[0])):
            h, data = mx.recordio.unpack(r.read_idx(key))
            back.append((int(h.label), data))
        assert back == items, "MXNet read facefit's file differently"
        ids = [mx.recordio.unpack(r.read_idx(k))[0].label.tolist() for k in range(int(header.label[0]),
                                                                                   int(header.label[1]))]
        assert len(ids) == len(persons)
        r.close()
        print(f"MXNet reads facefit's .rec: {len(back)} images and {len(ids)} identity records identical")


if __name__ == "__main__":
    main()
