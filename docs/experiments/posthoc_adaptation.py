"""Post-hoc adaptation to the target population, measured: linear maps, multi-view TTA and score fusion.

Embeds the Korean training photos, the Korean validation pairs and LFW with two
models (facefit's own chips, cache and metrics code, as ``facefit eval`` uses
them), fits linear maps on the Korean *training* embeddings only, and scores
both benchmarks with cosine similarity, 10 folds:

- centring on the Korean mean; WCCN (whitening of the within-person scatter,
  shrunk toward its mean eigenvalue); LDA; removing the directions that
  separate age classes (nuisance projection);
- WCCN fitted on the held-out persons that ``facefit train`` keeps apart (10%,
  seed 0), since a fine-tuned model's training embeddings are over-fitted;
- test-time augmentation over 7 views (flip x small shifts and scales);
- fusion of the fine-tuned and pre-trained models' scores.

    python docs/experiments/posthoc_adaptation.py RUN_DIR [--data ../shared/data] [--out out/posthoc]

Embeddings are cached in ``--out`` (an ignored folder: they are derived from the face data).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import numpy as np


def embed_sets(model_name: str, flip: bool, data: Path, out: Path) -> dict[str, np.ndarray]:
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache
    from facefit.models import create_model
    from facefit.train.config import DataConfig
    from facefit.train.data import prepare_data
    from facefit.train.validate import PairsValidator

    tag = Path(model_name).name + ("-flip" if flip else "")
    path = out / f"emb-{tag}.npz"
    if path.is_file():
        return dict(np.load(path))
    model = create_model(model_name)
    if flip:
        model.contract = replace(model.contract, flip_average=True)
    recipe = model.contract.align
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        train = prepare_data(DataConfig(train=[data / "kfamily/train"], val_fraction=0.0), recipe, cache).train
        kv = PairsValidator.build(data / "kfamily/val_pairs.csv", data / "kfamily/val", recipe, cache)
        lv = PairsValidator.build(data / "lfw/pairs.txt", data / "lfw", recipe, cache)
    arrays = {"tr": model.embed(train.chips), "tr_y": train.labels,
              "tr_age": np.array([p.stem.split("_")[-1][0] for p in train.paths]),
              "kv": model.embed(kv.chips), "kv_chips": kv.chips, "lv": model.embed(lv.chips)}
    for pre, v in (("kv", kv), ("lv", lv)):
        arrays.update({f"{pre}_a": v.a, f"{pre}_b": v.b, f"{pre}_same": v.same, f"{pre}_f": v.folds})
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scores(z: dict, pre: str, f=lambda e: e) -> np.ndarray:  # noqa: ANN001
    e = unit(f(z[pre]))
    return (e[z[f"{pre}_a"]] * e[z[f"{pre}_b"]]).sum(1)


def metrics(z: dict, pre: str, s: np.ndarray) -> str:
    from facefit.eval.metrics import verification_metrics

    m = verification_metrics(s, z[f"{pre}_same"], z[f"{pre}_f"])
    return f"{m['accuracy']:.4f} {m['auc']:.4f} {m['tar_at_far_1e-2']:.3f}"


def inv_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return v @ np.diag(1 / np.sqrt(np.maximum(w, 1e-9))) @ v.T


def shrink(s: np.ndarray, a: float) -> np.ndarray:
    return (1 - a) * s + a * np.trace(s) / len(s) * np.eye(len(s))


def within_scatter(e: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    classes = np.unique(y)
    means = np.stack([e[y == k].mean(0) for k in classes])
    w = e - means[np.searchsorted(classes, y)]
    return w.T @ w / len(e), means, classes


def held_out_mask(y: np.ndarray) -> np.ndarray:
    """The training photos of the persons ``facefit train`` holds out (10%, seed 0)."""
    order = list(range(int(y.max()) + 1))
    random.Random(0).shuffle(order)
    return np.isin(y, order[: round(len(order) * 0.1)])


def linear_maps(z: dict) -> dict[str, callable]:
    tr, y, age = unit(z["tr"]), z["tr_y"], z["tr_age"]
    mu = tr.mean(0)
    sw, means, _ = within_scatter(tr, y)
    sb = np.cov((means - mu).T)
    maps = {"none": lambda e: e, "centred": lambda e: unit(e) - mu}
    for a in (0.3, 0.7):
        w = inv_sqrt(shrink(sw, a))
        maps[f"wccn shrink {a}"] = lambda e, w=w: (unit(e) - mu) @ w
    wi = inv_sqrt(shrink(sw, 0.1))
    _, v = np.linalg.eigh(wi @ sb @ wi)
    p = wi @ v[:, ::-1][:, :64]
    maps["lda shrink 0.1, 64 dims"] = lambda e, p=p: (unit(e) - mu) @ p
    ages = np.unique(age)
    am = np.stack([tr[age == a].mean(0) for a in ages])
    _, va = np.linalg.eigh(np.cov((am - mu).T, aweights=[np.sum(age == a) for a in ages]))
    nap = np.eye(len(va)) - va[:, ::-1][:, :2] @ va[:, ::-1][:, :2].T
    maps["age directions removed (2)"] = lambda e, nap=nap: unit(e) @ nap
    held = held_out_mask(y)
    swh, _, _ = within_scatter(tr[held], y[held])
    wh, mh = inv_sqrt(shrink(swh, 0.7)), tr[held].mean(0)
    maps["wccn on held-out persons, shrink 0.7"] = lambda e: (unit(e) - mh) @ wh
    return maps


def tta_scores(model_name: str, z: dict) -> np.ndarray:
    """Korean val scores with each face embedded as the mean of 7 views x {chip, mirror}."""
    import torch
    import torch.nn.functional as F

    from facefit.models import create_model

    model = create_model(model_name)
    model.contract = replace(model.contract, flip_average=True)
    chips = z["kv_chips"]

    def warp(dx: float, dy: float, s: float) -> np.ndarray:
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
        n, _, h, w = x.shape
        theta = torch.tensor([[1 / s, 0, 2 * dx / w], [0, 1 / s, 2 * dy / h]], dtype=torch.float32).expand(n, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return y.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()

    views = [(0, 0, 1.0), (0, 0, 0.95), (0, 0, 1.05), (3, 0, 1.0), (-3, 0, 1.0), (0, 3, 1.0), (0, -3, 1.0)]
    total = sum(unit(model.embed(warp(*v) if v != (0, 0, 1.0) else chips)) for v in views)
    return scores({"kv": total, **{k: z[k] for k in ("kv_a", "kv_b")}}, "kv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a fine-tuned model (run folder)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("out/posthoc"))
    args = ap.parse_args()
    pre = embed_sets("dlib-resnet", True, args.data, args.out)
    ft = embed_sets(args.run, False, args.data, args.out)
    print("model        | map                                   | Korean acc AUC TAR@1e-2 | LFW acc AUC TAR@1e-2")
    for label, z in (("pre-trained", pre), ("fine-tuned", ft)):
        for name, f in linear_maps(z).items():
            print(f"{label:12s} | {name:37s} | {metrics(z, 'kv', scores(z, 'kv', f))} | "
                  f"{metrics(z, 'lv', scores(z, 'lv', f))}")
    print(f"fine-tuned   | {'7-view TTA':37s} | {metrics(ft, 'kv', tta_scores(args.run, ft))} |")
    for w in (0.8, 0.6):
        k = w * scores(ft, "kv") + (1 - w) * scores(pre, "kv")
        lf = w * scores(ft, "lv") + (1 - w) * scores(pre, "lv")
        print(f"{'fusion':12s} | {f'{w:g} fine-tuned + {1 - w:g} pre-trained':37s} | {metrics(ft, 'kv', k)} | "
              f"{metrics(ft, 'lv', lf)}")


if __name__ == "__main__":
    main()
