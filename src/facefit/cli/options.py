"""The options several commands share, declared once (each command keeps only its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.defaults import DEFAULT_MODEL

# Some inputs failed and the rest were done: the exit status of a batch that went on.
EXIT_PARTIAL = 3

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model: a registered name (facefit models), a model or "
                                                             "run folder, a dlib .dat file, or ARCH=PATH (another "
                                                             "project's checkpoint, e.g. iresnet50=backbone.pth).")]
ModelsOpt = Annotated[list[str] | None, typer.Option("--model", "-m", help="Model name or path; repeat to compare "
                                                                           "(the first is the baseline) "
                                                                           f"[default: {DEFAULT_MODEL}].",
                                                     show_default=False)]
GalleryOpt = Annotated[str | None, typer.Option("--gallery", "-g", help="Gallery file or postgresql:// URL "
                                                "(default: $FACEFIT_GALLERY, else a per-user file).",
                                                show_default=False)]
GalleryModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name or path (default: the "
                                                     f"gallery's model; for a new gallery, {DEFAULT_MODEL}).",
                                                     show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ThresholdFromOpt = Annotated[Path | None, typer.Option("--threshold-from", help="Use the threshold calibrated at "
                                                       "FAR 1e-3 in an evaluation's metrics.json.",
                                                       show_default=False)]


def _apply_precision(value: str | None) -> str | None:
    """Check --precision and make it the process's precision: every model this command loads runs at it."""
    if value is None:
        return None
    import os

    from facefit.errors import PrecisionError
    from facefit.models.precision import ENV_PRECISION, requested_precision

    try:
        os.environ[ENV_PRECISION] = requested_precision(value)
    except PrecisionError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


PrecisionOpt = Annotated[str | None, typer.Option("--precision", help="Inference precision: auto (measure fp32 "
                                                  "against bf16 once per machine and model, keep the faster), "
                                                  "fp32 or bf16 [default: $FACEFIT_PRECISION, else auto].",
                                                  callback=_apply_precision, show_default=False)]
