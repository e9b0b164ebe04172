"""``facefit pairs``: an identity-disjoint verification pairs file (CSV) for a new identity-folder data set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from facefit.cli.common import info, report_scan

if TYPE_CHECKING:  # only for type hints: importing them for real would slow down ``facefit --help``
    from facefit.data.pairgen import PairPlan


def pairs_command(
    root: Annotated[Path, typer.Argument(help="Folder with one sub-folder of images per person.",
                                         show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Pairs file to write (CSV).", show_default=False)],
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds; each person is in exactly one.")] = 10,
    pos: Annotated[int | None, typer.Option("--pos", min=1, help="Same-person pairs in all (default: all possible, "
                                                                 "at most 3000).", show_default=False)] = None,
    neg: Annotated[int | None, typer.Option("--neg", min=1, help="Different-person pairs in all (default: as many "
                                                                 "as same-person pairs).", show_default=False)]
    = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same file.")] = 0,
    group_by: Annotated[str | None, typer.Option("--group-by", help="Spread pairs evenly over this attribute's "
                                                                    "values (e.g. age_gap) and write it as a column.",
                                                 show_default=False)] = None,
    metadata: Annotated[Path | None, typer.Option("--metadata", help="CSV of per-image attributes: a 'path' (relative "
                                                                     "to ROOT) or 'file' column, then attributes.",
                                                  show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Build an identity-disjoint pairs file (CSV) for evaluating on a new data set: folds never share a person."""
    import shlex

    from facefit.data.folders import IdentityFolders
    from facefit.data.pairgen import make_pairs, pairs_to_csv
    from facefit.io.files import check_not_input, check_writable, write_text_atomic

    out = check_writable(out, overwrite)
    if metadata is not None:
        check_not_input(out, [metadata], what="the metadata file")
    data = IdentityFolders.scan(root, metadata=metadata)
    report_scan(data, metadata)
    plan = make_pairs(data, n_folds=folds, n_pos=pos, n_neg=neg, seed=seed, group_by=group_by)
    for note in plan.notes:
        info(f"note: {note}")
    write_text_atomic(out, pairs_to_csv(plan, data))
    info(f"wrote {len(plan.pairs)} pairs ({plan.n_pos} same-person, {plan.n_neg} different-person) in {folds} "
         f"identity-disjoint folds from {len(data.persons)} persons, {data.n_images} images to {out}")
    if group_by:
        _report_groups(plan, group_by)
    info(f"next: facefit eval {shlex.quote(str(root))} --pairs {shlex.quote(str(out))} --out REPORT_DIR")


def _report_groups(plan: PairPlan, group_by: str) -> None:
    """Pair counts per value of the attribute the pairs were spread over."""
    counts: dict[str, list[int]] = {}
    for p in plan.pairs:
        counts.setdefault(p.attrs.get(group_by, "(none)"), [0, 0])[0 if p.same else 1] += 1
    info(f"pairs by {group_by} (same / different):")
    for value in sorted(counts):
        same, diff = counts[value]
        info(f"  {value}: {same} / {diff}")
