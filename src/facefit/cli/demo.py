"""``facefit demo``: the main job end to end on the shared data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import err, out, progress_bar


def demo(
    data: Annotated[Path | None, typer.Option("--data", help="Data folder holding fixtures/ (default: "
                                                             "$FACEFIT_DATA or ../shared/data).", show_default=False)]
    = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder the demo owns and writes its figures, reports and "
                                                        "training run to: new, empty, or an earlier demo's (whose "
                                                        "outputs are replaced).")]
    = Path("out/demo"),
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Detection processes.")] = None,
    lfw: Annotated[bool, typer.Option("--lfw/--no-lfw", help="Also verify on LFW (about 3 minutes the first "
                                                             "time, then cached).")] = True,
    train_minutes: Annotated[float, typer.Option("--train-minutes", min=0.0, help="Fine-tuning budget in minutes "
                                                 "(0 skips fine-tuning; the default recipe's budget is 30).")]
    = 5.0,
    suite: Annotated[Path | None, typer.Option("--suite", help="Suite YAML of the final pre-trained vs fine-tuned "
                                               "table (make demo: suites/demo.yaml) [default: the Korean validation "
                                               "pairs and LFW in the data folder].", show_default=False)] = None,
) -> None:
    """Run the main job: align, embed, check against dlib, verify, fine-tune on Korean faces, compare."""
    from facefit.demo import find_data_dir, run_demo

    root = find_data_dir(data)
    if root is None:
        err.print("facefit: error: no data folder found (looked for $FACEFIT_DATA and ../shared/data); "
                  "pass --data DIR, a folder holding fixtures/johns and fixtures/yale/original", markup=False)
        raise typer.Exit(2)
    run_demo(root, out_dir, out, workers=workers, lfw=lfw, train_minutes=train_minutes, progress=progress_bar,
             suite=suite)
