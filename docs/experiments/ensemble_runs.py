"""Two or more fine-tuned runs together: the mean of their scores, and one model with their mean weights.

    python docs/experiments/ensemble_runs.py RUN_A RUN_B [...] [--data ../shared/data]

Scores the Korean validation pairs and LFW (cosine, 10 folds) from facefit's own chips and metrics code.
The weight average needs runs of one architecture that started from the same standardised weights
(every ``facefit train`` run of dlib-resnet with the default seed does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from facefit.eval.metrics import verification_metrics
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache
    from facefit.models import create_model
    from facefit.train.validate import PairsValidator

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = ap.parse_args()
    models = [create_model(r) for r in args.runs]
    recipe = models[0].contract.align
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        sets = {"Korean": PairsValidator.build(args.data / "kfamily/val_pairs.csv", args.data / "kfamily/val",
                                               recipe, cache),
                "LFW": PairsValidator.build(args.data / "lfw/pairs.txt", args.data / "lfw", recipe, cache)}
    soup = create_model(args.runs[0])
    states = [m.state_dict() for m in models]
    soup.load_state_dict({k: sum(s[k].float() for s in states) / len(states) if v.is_floating_point() else v
                          for k, v in states[0].items()})

    def cosine(model, v) -> np.ndarray:  # noqa: ANN001
        e = model.embed(v.chips)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        return (e[v.a] * e[v.b]).sum(1)

    for name, v in sets.items():
        scores = [cosine(m, v) for m in models]
        rows = [(Path(r).name, s) for r, s in zip(args.runs, scores)]
        rows += [("mean of scores", np.mean(scores, 0)), ("mean of weights", cosine(soup, v))]
        for label, s in rows:
            m = verification_metrics(s, v.same, v.folds)
            print(f"{name:7s} {label:20s} accuracy {m['accuracy']:.4f} AUC {m['auc']:.4f} "
                  f"TAR@1e-2 {m['tar_at_far_1e-2']:.3f}", flush=True)


if __name__ == "__main__":
    main()
