"""The label a model gets in reports: its folder's or registered name, made unique in order."""

from __future__ import annotations

from pathlib import Path


def model_labels(names: list[str]) -> list[str]:
    """One label per model reference: a registered name as is, a path by its last part; repeats get -2, -3..."""
    labels: list[str] = []
    for n in names:
        p = Path(n)
        arch, sep, rest = n.partition("=")
        if sep and not p.exists() and "/" not in arch:  # ARCH=PATH: the architecture and the file's stem
            base = f"{arch}:{Path(rest).stem}"
        else:
            base = p.name if (p.exists() or "/" in n) else n
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels
