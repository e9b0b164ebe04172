"""Defaults shared by the library and the CLI, in a module that imports nothing heavy."""

from __future__ import annotations

import os

ENV_MODEL = "FACEFIT_MODEL"
# The model every command uses when none is given: the registered model measured best on the target
# population while keeping LFW (README, "Models"): SFace, pre-trained, over dlib-resnet.
SHIPPED_DEFAULT_MODEL = "sface"


def default_model() -> str:
    """The default model: $FACEFIT_MODEL when set (a name or a path), else the shipped default."""
    return os.environ.get(ENV_MODEL, "").strip() or SHIPPED_DEFAULT_MODEL


# Read once at import, for the CLI's option defaults (each command runs in a fresh process).
DEFAULT_MODEL = default_model()
