"""Figures written to files (matplotlib's Agg backend; never opens a window)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# What --plot accepts: the suffixes matplotlib's Agg backend writes that make sense for a figure.
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".eps")


def distance_heatmap(matrix: np.ndarray, labels: Sequence[str], path: str | Path, *, metric: str,
                     threshold: float | None = None, title: str | None = None) -> None:
    """Save a pairwise distance matrix as an annotated heat map (PNG, SVG or PDF by suffix)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(labels)
    side = min(24.0, max(4.5, 0.42 * n + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    vmax = float(np.max(matrix)) if matrix.size else 1.0
    im = ax.imshow(matrix, cmap="viridis_r", vmin=0.0, vmax=max(vmax, 1e-6))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"{metric} distance")
    if n <= 40:
        ax.set_xticks(range(n), labels=labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels=labels, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= 16:
        for i in range(n):
            for j in range(n):
                v = matrix[i, j]
                strong = threshold is not None and i != j and v < threshold
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 * vmax else "black", fontweight="bold" if strong else "normal")
    sub = f" (bold: below threshold {threshold:g})" if threshold is not None and n <= 16 else ""
    ax.set_title((title or f"Pairwise {metric} distance") + sub, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
