"""Each base model's default fine-tuning recipe, as data.

A config names only what differs from ``TrainConfig``'s defaults; the base's recipe fills
in under what the user wrote (a config file or ``--set`` always wins). The numbers
behind each recipe are in docs/finetuning.md.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

BASE_RECIPES: dict[str, dict[str, Any]] = {
    # 12 epochs: the default's held-out persons stop improving after 10-13 (runs F, F2, F3).
    "dlib-resnet": {"optim": {"epochs": 12}, "guard": {"freeze_stages": 3}},
    # A BatchNorm network on ~6,000 photos: running statistics stay the pretrained ones; the stem and the
    # first blocks (through conv_6_dw) stay frozen. 3 epochs and ArcFace margin 0.3: the held-out training
    # persons peak at epoch 1-3 of 6, and margin 0.3 beat 0.15 on them over three seeds (docs/finetuning.md).
    "sface": {"standardize": False, "optim": {"epochs": 3}, "loss": {"margin": 0.3},
              "guard": {"freeze_stages": 3, "bn": "frozen"}},
}


def base_architecture(base: str) -> str:
    """The architecture a base names: a registered name, or the one recorded in a model or run folder."""
    from facefit.models.artifact import is_model_dir, read_model_meta

    path = Path(base).expanduser()
    for folder in (path, path / "model"):
        if is_model_dir(folder):
            try:
                return read_model_meta(folder)[0].architecture
            except Exception:  # a bad folder is reported when the model is loaded
                return base
    return base


def _merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(under)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def with_base_recipe(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` over its base's recipe (``TrainConfig``'s default base when it names none)."""
    from facefit.train.config import DEFAULT_BASE

    base = tree.get("base", DEFAULT_BASE)
    recipe = BASE_RECIPES.get(base_architecture(base) if isinstance(base, str) else "", {})
    return _merge(recipe, tree)
