"""Photos to embeddings, end to end: each stage alone, then the engine running them together.

Detection and alignment run in worker processes while this process embeds, so the end-to-end
rate should approach the slower stage's, not the two stages' sum.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class StageRow:
    model: str
    detector: str
    stage: str  # "detect + align", "embed", "end to end"
    images: int
    faces: int
    seconds: float
    workers: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "images_per_s": self.images_per_s}


def bench_end_to_end(label: str, model, files: list[Path], workers: int | None = None,
                     detector: str | None = None) -> list[StageRow]:
    """Time ``files`` -> embeddings with ``model``: alignment alone, embedding alone, and both together.

    ``detector`` None is the model's own."""
    from facefit.align.batch import align_files, default_workers
    from facefit.engine import FaceEngine

    engine = FaceEngine(model, detector=detector, faces="largest", workers=workers)
    used = default_workers() if workers is None else workers
    for f in files:  # every pass reads the photos from the page cache, not the first from disk
        f.read_bytes()
    t0 = time.perf_counter()
    faces = [f for res in align_files(files, engine.config, workers=workers) for f in res.faces]
    align_s = time.perf_counter() - t0
    engine.embed(faces[:8])  # settles the precision (auto measures on real chips) and builds the inference copy
    t0 = time.perf_counter()
    engine.embed(faces)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = engine.embed_files(files)
    total_s = time.perf_counter() - t0
    det = engine.config.detector
    return [StageRow(label, det, "detect + align", len(files), len(faces), align_s, used),
            StageRow(label, det, "embed", len(files), len(faces), embed_s, used),
            StageRow(label, det, "end to end", len(files), len(got), total_s, used)]
