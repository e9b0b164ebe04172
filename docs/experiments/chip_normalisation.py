"""Photometric normalisation of the chips before embedding, measured on the pre-trained model.

Many Korean childhood photos are faded, colour-cast prints, and the positive
pairs match them against modern digital photos of the same person. This
script asks whether normalising every chip the same way at test time (so the
model sees less of the print's era) helps verification, before any training:
greyscale, grey-world white balance, CLAHE on the lightness channel, and a
per-chip percentile contrast stretch. Each is scored on the Korean validation
pairs and on LFW (cosine, 10 folds, facefit's chips and metrics code).

    python docs/experiments/chip_normalisation.py [--model dlib-resnet] [--data ../shared/data]

Nothing derived from the faces is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from posthoc_adaptation import metrics, unit  # noqa: E402


def grey(c: np.ndarray) -> np.ndarray:
    y = c.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(np.clip(y + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def grey_world(c: np.ndarray) -> np.ndarray:
    f = c.astype(np.float32)
    mean = f.reshape(len(f), -1, 3).mean(1)[:, None, None, :]
    gain = mean.mean(-1, keepdims=True) / np.maximum(mean, 1.0)
    return np.clip(f * gain + 0.5, 0, 255).astype(np.uint8)


def clahe(c: np.ndarray) -> np.ndarray:
    import cv2

    op = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    out = np.empty_like(c)
    for i, chip in enumerate(c):
        lab = cv2.cvtColor(chip, cv2.COLOR_RGB2LAB)
        lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
        out[i] = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return out


def stretch(c: np.ndarray) -> np.ndarray:
    f = c.astype(np.float32)
    flat = f.reshape(len(f), -1)
    lo = np.percentile(flat, 1, axis=1)[:, None, None, None]
    hi = np.percentile(flat, 99, axis=1)[:, None, None, None]
    return np.clip((f - lo) * 255.0 / np.maximum(hi - lo, 1.0) + 0.5, 0, 255).astype(np.uint8)


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda c: c, "greyscale": grey, "grey-world": grey_world, "clahe": clahe, "stretch": stretch,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="dlib-resnet")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--only", nargs="*", default=list(TRANSFORMS))
    args = ap.parse_args()

    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache
    from facefit.models import create_model
    from facefit.train.validate import PairsValidator

    model = create_model(args.model)
    model.contract = replace(model.contract, flip_average=True)
    recipe = model.contract.align
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        sets = {"korean": PairsValidator.build(args.data / "kfamily/val_pairs.csv", args.data / "kfamily/val",
                                               recipe, cache),
                "lfw": PairsValidator.build(args.data / "lfw/pairs.txt", args.data / "lfw", recipe, cache)}
    print("transform    korean acc / AUC / TAR@1e-2    lfw acc")
    for name in args.only:
        row = []
        for v in sets.values():
            e = unit(model.embed(TRANSFORMS[name](v.chips)))
            z = {"s_same": v.same, "s_f": v.folds}
            row.append(metrics(z, "s", (e[v.a] * e[v.b]).sum(1)))
        print(f"{name:12s} {row[0]:30s} {row[1].split()[0]}", flush=True)


if __name__ == "__main__":
    main()
