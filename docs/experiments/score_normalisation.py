"""Cohort score normalisation (Z/S-norm, adaptive S-norm), measured on both benchmarks.

Two error kinds dominate on the Korean pairs: different small children who look
alike, and the same person far apart in age. Both are faces whose similarity to
*everyone* is shifted. Cohort normalisation rescales each comparison by how
similar each face is to a cohort of other people: for a face ``e``, ``mu(e)`` and
``sd(e)`` are the mean and spread of its cosine to the cohort (all of it, or only
its ``k`` closest members for adaptive S-norm), and a pair scores
``((s - mu(a)) / sd(a) + (s - mu(b)) / sd(b)) / 2``.

The cohort is the Korean *training* photos (never the validation persons), one
mean embedding per person, or only the 10% of persons ``facefit train`` holds out
(seed 0), since a fine-tuned model's training persons are spread apart by the
training itself. The same cohort serves LFW: a deployment has one cohort.

    python docs/experiments/score_normalisation.py [RUN_DIR] [--data ../shared/data] [--out out/posthoc]

Embeddings are cached in ``--out`` by ``posthoc_adaptation.embed_sets``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from posthoc_adaptation import embed_sets, held_out_mask, metrics, unit  # noqa: E402


def cohort_stats(e: np.ndarray, cohort: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    sims = e @ cohort.T
    if k is not None and k < sims.shape[1]:
        sims = -np.partition(-sims, k - 1, axis=1)[:, :k]
    return sims.mean(1), sims.std(1) + 1e-6


def normalised_scores(z: dict, pre: str, cohort: np.ndarray, k: int | None) -> np.ndarray:
    e = unit(z[pre])
    a, b = z[f"{pre}_a"], z[f"{pre}_b"]
    s = (e[a] * e[b]).sum(1)
    mu, sd = cohort_stats(e, cohort, k)
    return ((s - mu[a]) / sd[a] + (s - mu[b]) / sd[b]) / 2


def cohorts(z: dict) -> dict[str, np.ndarray]:
    tr, y = unit(z["tr"]), z["tr_y"]
    classes = np.unique(y)
    means = unit(np.stack([tr[y == c].mean(0) for c in classes]))
    held = held_out_mask(y)
    return {"training photos": tr, "person means": means, "held-out photos": tr[held]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", nargs="?", help="a fine-tuned model (run folder); without it, the pre-trained model only")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("out/posthoc"))
    args = ap.parse_args()
    pre = embed_sets("dlib-resnet", True, args.data, args.out)
    models = [("pre-trained", pre)]
    if args.run:
        models.append(("fine-tuned", embed_sets(args.run, False, args.data, args.out)))
    print("model        | cohort           | k    | Korean acc AUC TAR@1e-2 | LFW acc AUC TAR@1e-2")
    for label, z in models:
        plain = {p: (unit(z[p])[z[f"{p}_a"]] * unit(z[p])[z[f"{p}_b"]]).sum(1) for p in ("kv", "lv")}
        print(f"{label:12s} | {'none':16s} | {'':4s} | {metrics(z, 'kv', plain['kv'])} | "
              f"{metrics(z, 'lv', plain['lv'])}")
        for cname, cohort in cohorts(z).items():
            for k in (None, 200, 50):
                if k is not None and k >= len(cohort):
                    continue
                kv, lv = (normalised_scores(z, p, cohort, k) for p in ("kv", "lv"))
                print(f"{label:12s} | {cname:16s} | {k or 'all'!s:4s} | {metrics(z, 'kv', kv)} | "
                      f"{metrics(z, 'lv', lv)}", flush=True)


if __name__ == "__main__":
    main()
