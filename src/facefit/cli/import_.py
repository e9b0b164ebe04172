"""``facefit import``: insightface ``.rec`` training sets and ``.bin`` verification sets -> plain folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import info, progress_bar, report_failures, write_failures


def import_command(
    src: Annotated[Path, typer.Argument(help="insightface train.rec (its .idx beside it is used when present) or a "
                                             "verification .bin such as lfw.bin.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create (must not exist, or be empty).",
                                      show_default=False)],
) -> None:
    """Convert an insightface .rec or .bin into folders that train and eval read.

    A .rec becomes identity folders OUT/<class>/<record>.jpg for `facefit train`;
    a .bin becomes OUT/images/ and OUT/pairs.csv (insightface's 10 folds) for
    `facefit eval OUT --pairs OUT/pairs.csv`. Image bytes are copied unchanged.
    Records that do not decode are listed and left out of a .rec import (exit
    code 3, list in OUT/import-failures.tsv); a .bin
    with an undecodable image is refused, since its protocol would change. The
    images are insightface's 112x112 chips: facefit aligns them again for each
    model (use --detector auto in eval, where tight crops defeat plain HOG).
    """
    import shlex

    from facefit.data.convert import import_insightface

    result = import_insightface(src, out, progress=progress_bar)
    q = shlex.quote(str(out))
    if result.kind == "rec":
        failures_path = out / "import-failures.tsv" if result.failures else None
        if failures_path is not None:
            write_failures(failures_path, result.failures)
        report_failures(result.failures, failures_path, result.images + len(result.failures), "records")
        info(f"wrote {result.images} images of {result.persons} persons to {out}")
        info(f"next: facefit train {q} --out RUN")
        if result.failures:
            from facefit.cli.options import EXIT_PARTIAL

            raise typer.Exit(EXIT_PARTIAL)
    else:
        info(f"wrote {result.images} images and {result.pairs} pairs to {out}")
        info(f"next: facefit eval {q} --pairs {shlex.quote(str(out / 'pairs.csv'))} --detector auto --out REPORT_DIR")
