"""Terminal tables shared by commands and the demo (rich, printed to a given console)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.console import Console


def print_distance_matrix(console: Console, labels: Sequence[str], paths: Sequence[str], matrix: np.ndarray,
                          metric: str, threshold: float | None) -> None:
    """The classic compare.py output: numbered faces, then the matrix; pairs under the threshold marked."""
    console.print("Faces:")
    for i, (label, path) in enumerate(zip(labels, paths)):
        console.print(f"  {i}: {path}" + (f"  [face {label.rsplit('#', 1)[1]}]" if "#" in label else ""),
                      markup=False)
    note = f"; * marks pairs below the model's threshold {threshold:g}" if threshold is not None else ""
    console.print(f"\n{metric} distance matrix{note}", markup=False)
    width = max(len(str(len(labels) - 1)), 2)
    console.print(" " * width + "".join(f"{j:>9d}" for j in range(len(labels))), markup=False, highlight=False)
    for i, row in enumerate(matrix):
        cells = []
        for j, v in enumerate(row):
            if threshold is not None and i != j and v < threshold:
                cells.append(f"[green]{v:8.4f}*[/green]")
            else:
                cells.append(f"{v:8.4f} ")
        console.print(f"{i:>{width}d}" + "".join(cells), highlight=False, soft_wrap=True)
