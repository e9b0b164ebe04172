"""Inference precision: fp32 or bf16, and ``auto``, which picks one per machine by measuring.

bf16 is worth it only where the CPU has the instructions for it *and* oneDNN uses them well: on a Xeon
with AMX it runs dlib-resnet about 3x faster, on an AMD EPYC with avx512_bf16 but no AMX it ran about 10x
slower (docs/benchmarks.md). So ``auto`` times both on real chips the first time a model runs on a machine
and keeps bf16 only when it is clearly faster and every embedding stays where fp32 puts it. The choice is
cached per CPU model and flags, torch version and model contract, so the measurement runs once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from facefit.errors import PrecisionError

if TYPE_CHECKING:
    from facefit.models.base import FaceEmbedder

PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ENV_PRECISION = "FACEFIT_PRECISION"
MIN_SPEEDUP = 1.3  # bf16 must beat fp32 by this factor...
MIN_COSINE = 0.9999  # ...and every embedding must keep this cosine to its fp32 value
CACHE_FILE = "precision.json"
MEASURE_BATCH = 32
# The CPU flags that decide how fast bf16 runs; other flags changing (a microcode update) keeps the choice.
_RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def requested_precision(value: str | None = None) -> str:
    """The precision asked for: ``value``, else $FACEFIT_PRECISION, else ``auto``; validated."""
    source = "" if value is not None else f" (from ${ENV_PRECISION})"
    text = value if value is not None else os.environ.get(ENV_PRECISION) or "auto"
    text = text.strip().lower()
    if text not in PRECISIONS:
        raise PrecisionError(f"unknown precision {text!r}{source}: expected one of {', '.join(PRECISIONS)}")
    return text


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs at, and why."""

    precision: str  # fp32 or bf16
    source: str  # asked | measured | cached | unsupported | members (an ensemble)
    fp32_img_s: float | None = None
    bf16_img_s: float | None = None
    min_cosine: float | None = None
    reason: str = ""

    @property
    def speedup(self) -> float | None:
        if not self.fp32_img_s or self.bf16_img_s is None:
            return None
        return self.bf16_img_s / self.fp32_img_s

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``fp32 (auto, measured: bf16 0.11x, min cosine 0.99998)``."""
        if self.source == "asked":
            return f"{self.precision} (asked)"
        if self.source == "unsupported":
            return f"{self.precision} (auto: {self.reason})"
        if self.source == "members":
            return f"{self.precision} (each member its own)"
        detail = f"bf16 {self.speedup:.2f}x fp32" if self.speedup is not None else "not timed"
        if self.min_cosine is not None:
            detail += f", min cosine {self.min_cosine:.5f}"
        return f"{self.precision} (auto, {self.source}: {detail})"

    def to_json(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}


def bf16_unsupported(device: torch.device) -> str | None:
    """Why bf16 inference cannot run on ``device`` here, or None when it can."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16 support"
    if device.type != "cpu":
        return f"bf16 inference on {device.type} is not supported"
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN (mkldnn), which bf16 on a CPU needs"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no bf16 instructions (avx512_bf16 or amx_bf16)"
    return None


@lru_cache(maxsize=1)
def machine_identity() -> dict[str, str]:
    """What a cached choice is valid for: the CPU model, its bf16-relevant flags, the torch version."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    return {"cpu": model, "flags": " ".join(f for f in _RELEVANT_FLAGS if f in flags),
            "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}


def cache_key(contract_id: str, device: torch.device) -> str:
    ident = {**machine_identity(), "device": device.type, "contract": contract_id}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _cache_path() -> Path:
    from facefit.io.assets import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: measure again, it costs seconds


def _write_cache(path: Path, key: str, choice: PrecisionChoice) -> None:
    data = _read_cache(path)
    data[key] = {**choice.to_json(), "machine": machine_identity(), "measured": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only means measuring again next time


Rates = Callable[["FaceEmbedder", np.ndarray], tuple[float, float, float]]


def measure_rates(model: FaceEmbedder, chips: np.ndarray, repeats: int = 5) -> tuple[float, float, float]:
    """(fp32 img/s, bf16 img/s, least cosine between the two) on a batch made of ``chips``.

    The batch is ``chips`` repeated up to MEASURE_BATCH faces, so one photo suffices. fp32 and bf16 runs
    alternate, and the rates are taken at the median of the paired ratios: other work on the machine slows
    both runs of a pair alike, where best-of-N per precision let one lucky run decide (a 0.3x bf16 once
    measured 1.4x on a loaded 2-core machine).
    """
    batch = np.concatenate([chips] * -(-MEASURE_BATCH // len(chips)))[:MEASURE_BATCH]
    outs = {name: model.embed_at(batch, dtype, batch_size=MEASURE_BATCH) for name, dtype in DTYPES.items()}  # warm
    times: dict[str, list[float]] = {name: [] for name in DTYPES}
    for _ in range(repeats):
        for name, dtype in DTYPES.items():
            start = time.perf_counter()
            model.embed_at(batch, dtype, batch_size=MEASURE_BATCH)
            times[name].append(max(time.perf_counter() - start, 1e-9))
    ratio = float(np.median(np.array(times["fp32"]) / np.array(times["bf16"])))  # bf16 speed over fp32's
    fp32 = len(batch) / float(np.median(times["fp32"]))
    a, b = outs["fp32"][: len(chips)], outs["bf16"][: len(chips)]
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return fp32, fp32 * ratio, float(cos.min())


def settled_precision(model: FaceEmbedder, requested: str, *, remeasure: bool = False,
                      cache: Path | None = None) -> PrecisionChoice | None:
    """The precision ``model`` runs at, when it is known without measuring (asked, unsupported, cached)."""
    device = model._mean.device
    if requested == "fp32":
        return PrecisionChoice("fp32", "asked")
    unsupported = bf16_unsupported(device)
    if requested == "bf16":
        if unsupported:
            raise PrecisionError(f"precision bf16 cannot run here: {unsupported}; use fp32 or auto")
        return PrecisionChoice("bf16", "asked")
    if unsupported:
        return PrecisionChoice("fp32", "unsupported", reason=unsupported)
    if remeasure:
        return None
    hit = _read_cache(cache or _cache_path()).get(cache_key(model.contract.id, device))
    if isinstance(hit, dict) and hit.get("precision") in DTYPES:
        return PrecisionChoice(hit["precision"], "cached", hit.get("fp32_img_s"), hit.get("bf16_img_s"),
                               hit.get("min_cosine"))
    return None


def choose_precision(model: FaceEmbedder, requested: str, chips: np.ndarray, *, remeasure: bool = False,
                     rates: Rates | None = None, cache: Path | None = None, remember: bool = True) -> PrecisionChoice:
    """The precision ``model`` runs at on this machine; ``auto`` measures on ``chips`` (real faces) once.

    ``rates`` replaces the timing (tests); ``cache`` the cache file; ``remember=False`` keeps the
    measurement out of it.
    """
    settled = settled_precision(model, requested, remeasure=remeasure, cache=cache)
    if settled is not None:
        return settled
    if len(chips) == 0:
        raise ValueError("precision auto is measured on real chips: pass some")
    fp32, bf16, min_cos = (rates or measure_rates)(model, chips)
    keep = bf16 >= MIN_SPEEDUP * fp32 and min_cos >= MIN_COSINE
    choice = PrecisionChoice("bf16" if keep else "fp32", "measured", fp32, bf16, min_cos)
    if remember:
        _write_cache(cache or _cache_path(), cache_key(model.contract.id, model._mean.device), choice)
    return choice
