"""The options several commands share, declared once (each command keeps only its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.defaults import DEFAULT_MODEL

# Some inputs failed and the rest were done: the exit status of a batch that went on.
EXIT_PARTIAL = 3

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model: a registered name (facefit models), a model or "
                                                             "run folder, or a dlib .dat file.")]
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
