"""Draw docs/tradeoff.png from docs/tradeoff.csv: Korean validation vs LFW accuracy of measured runs.

Every row of the CSV is a measured `facefit eval` result (commands in docs/finetuning.md).
Run: .venv/bin/python docs/tradeoff.py
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader((HERE / "tradeoff.csv").open()))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for flip, marker in (("no", "o"), ("yes", "s")):
        sel = [r for r in rows if r["flip"] == flip]
        ax.scatter([float(r["korean_acc"]) for r in sel], [float(r["lfw_acc"]) for r in sel], marker=marker,
                   label="test-time flip" if flip == "yes" else "no flip")
        for r in sel:
            ax.annotate(r["run"], (float(r["korean_acc"]), float(r["lfw_acc"])), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    base = next(float(r["lfw_acc"]) for r in rows if r["run"] == "pre-trained")
    ax.axhline(base - 0.01, color="grey", linestyle="--", linewidth=1)
    ax.text(0.80, base - 0.0098, "LFW limit: pre-trained - 1 point", fontsize=8, color="grey")
    ax.axvline(0.93, color="grey", linestyle=":", linewidth=1)
    ax.text(0.9305, base + 0.0005, "Korean bar 0.93", fontsize=8, color="grey", rotation=90, va="top")
    ax.set_xlabel("Korean validation pairs: 10-fold accuracy")
    ax.set_ylabel("LFW pairs.txt: 10-fold accuracy")
    ax.set_title("Fine-tuning dlib-resnet: gain on new Korean persons vs loss on LFW")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "tradeoff.png", dpi=110)


if __name__ == "__main__":
    main()
