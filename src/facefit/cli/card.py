"""``facefit card``: (re)write a fine-tuned run's model card with a suite: benchmarks, forgetting, the gap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facefit.cli.common import CacheOpt, WorkersOpt, err, info


def card(
    run: Annotated[Path, typer.Argument(help="Training run folder (holding model/) or its model folder.",
                                        show_default=False)],
    suite: Annotated[Path, typer.Option("--suite", "-s", help="Suite YAML to evaluate the model and its base on.",
                                        show_default=False)],
    base: Annotated[str | None, typer.Option("--base", "-b", help="Model to compare with (default: the run's base).",
                                             show_default=False)] = None,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Evaluate a fine-tuned model and its base on a suite and write the result into its model card.

    MODEL_CARD.md gets the benchmarks table, the change on the suite's
    reference benchmark (forgetting) and the FMR/FNMR gap between populations
    at one threshold; facefit-model.json gets the same under metadata.suite;
    the full suite report goes to RUN/suite/ (for a bare model folder
    MODEL, to MODEL.suite/).
    """
    from facefit.eval.suite import load_suite

    loaded = load_suite(suite)  # a bad suite fails before any model is loaded
    suite_card(run, loaded, base=base, workers=workers, cache=cache)


def _model_dir(run: Path) -> Path:
    from facefit.errors import UsageError
    from facefit.models.artifact import is_model_dir

    if is_model_dir(run / "model"):
        return run / "model"
    if is_model_dir(run):
        return run
    raise UsageError(f"{run}: not a training run or model folder (no facefit-model.json in it or in {run}/model)")


def suite_card(run: Path, suite: Any, *, base: str | None = None, workers: int | None = None,
               cache: Path | None = None) -> dict:
    """Run ``suite`` on the run's model and its base, write RUN/suite/ and the model card; the suite document."""
    import shlex
    import sys

    from facefit.cli.eval import print_suite_summary, run_suite_for
    from facefit.errors import UsageError
    from facefit.eval.labels import model_labels
    from facefit.eval.report_suite import write_suite_report
    from facefit.eval.run import EvalOptions
    from facefit.io.files import write_report_dir
    from facefit.models.artifact import read_model_meta
    from facefit.train.card import record_suite

    model_dir = _model_dir(run)
    _, meta = read_model_meta(model_dir)
    base = base or meta.get("card", {}).get("base")
    if not base:
        raise UsageError(f"{model_dir}: the model does not name its base model; give --base")
    tuned = str(run)
    names = [base, tuned]
    labels = model_labels(names)
    srun, _ = run_suite_for(suite, names, EvalOptions(metric="auto", workers=workers), cache)
    # A run folder keeps the report beside its model; a bare model folder, in a sibling folder.
    report_dir = run / "suite" if model_dir != run else model_dir.parent / f"{model_dir.name}.suite"
    command = "facefit " + shlex.join(sys.argv[1:])
    flags = shlex.join([x for n in names for x in ("--model", n)])
    doc = write_report_dir(report_dir, lambda tmp: write_suite_report(srun, tmp, command=command, model_flags=flags))
    record_suite(model_dir, doc, labels[0], labels[1])
    print_suite_summary(doc)
    info(f"suite report in {report_dir}/")
    err.print(f"model card updated: {model_dir / 'MODEL_CARD.md'} and {model_dir / 'facefit-model.json'} "
              f"(metadata.suite)", markup=False)
    return doc
