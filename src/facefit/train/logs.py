"""Training logs: a CSV row per epoch, TensorBoard scalars when installed, PNG plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facefit.train.config import TrainConfig

LOG_FIELDS = ("epoch", "step", "seconds", "lr", "images_per_s", "train_loss", "metric_loss", "distill_loss",
              "l2sp_loss", "anchor_loss", "val_loss", "accuracy", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3",
              "threshold")


class TrainLog:
    def __init__(self, run_dir: Path, *, tensorboard: bool = True) -> None:
        self.csv_path = run_dir / "log.csv"
        self.rows: list[dict[str, Any]] = []
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]
        self.tb = None
        self.note: str | None = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self.note = "TensorBoard logs are off: install facefit[tensorboard] (the tensorboard package)"

    def truncate(self, epochs_done: int) -> None:
        """Drop rows of epochs a resumed run will redo."""
        self.rows = [r for r in self.rows if int(float(r["epoch"])) <= epochs_done]
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.csv_path)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append({k: row.get(k, "") for k in LOG_FIELDS})
        self._rewrite()
        if self.tb is not None:
            for k in LOG_FIELDS[2:]:
                v = row.get(k)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, row["step"])
            self.tb.flush()

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(name, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def plot(self, path: Path) -> None:
        """Loss and validation curves by epoch."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        def series(key: str) -> tuple[list[float], list[float]]:
            xs, ys = [], []
            for r in self.rows:
                try:
                    y = float(r[key])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(y):
                    xs.append(float(r["epoch"]))
                    ys.append(y)
            return xs, ys

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        panels = ((("train_loss", "metric_loss", "distill_loss", "val_loss"), "losses"),
                  (("accuracy", "auc", "tar_at_far_1e-2", "tar_at_far_1e-3"), "validation pairs"))
        for ax, (keys, title) in zip(axes, panels):
            for key in keys:
                xs, ys = series(key)
                if xs:
                    ax.plot(xs, ys, marker="o", ms=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def epoch_line(row: dict[str, Any], cfg: TrainConfig, is_best: bool) -> str:
    """The one line printed after each epoch."""

    def f(key: str, fmt: str = "{:.4f}") -> str:
        v = row.get(key)
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)

    parts = [f"epoch {row['epoch']}", f"step {row['step']}", f"loss {f('train_loss', '{:.3f}')}",
             f"metric {f('metric_loss', '{:.3f}')}"]
    if cfg.guard.distill_weight:
        parts.append(f"distill {f('distill_loss', '{:.4f}')}")
    if cfg.guard.anchors:
        parts.append(f"anchors {f('anchor_loss', '{:.4f}')}")
    parts.append(f"{f('images_per_s', '{:.0f}')} img/s")
    if row.get("accuracy") is not None:
        parts.append(f"val acc {f('accuracy')} AUC {f('auc')} TAR@1e-2 {f('tar_at_far_1e-2', '{:.3f}')}")
    if row.get("val_loss") is not None and math.isfinite(row["val_loss"]):
        parts.append(f"val loss {f('val_loss', '{:.3f}')}")
    return " | ".join(parts) + ("  *best" if is_best else "")
