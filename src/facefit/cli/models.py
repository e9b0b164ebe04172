"""``facefit models``: what the registry holds and each model's contract."""

from __future__ import annotations

from typing import Annotated

import typer

from facefit.cli.common import out


def models(
    name: Annotated[str | None, typer.Argument(help="Show one model's full contract (name or path).",
                                               show_default=False)] = None,
) -> None:
    """List the registered models, or print one model's embedding contract as JSON."""
    from rich.table import Table

    from facefit.models import create_model, get_spec, list_models

    if name is not None:
        from facefit.models.registry import is_registered

        if is_registered(name) and get_spec(name).pretrained is None:
            out.print_json(get_spec(name).contract.to_json())  # no weights ship: the architecture's contract
        else:
            out.print_json(create_model(name).contract.to_json())
        return
    table = Table(title="registered models", title_justify="left")
    for col in ("name", "input", "dim", "pretrained weights", "licence", "description"):
        table.add_column(col)
    for n in list_models():
        spec = get_spec(n)
        c = spec.contract
        weights = f"{spec.pretrained.asset.filename} ({spec.pretrained.asset.package})" if spec.pretrained else "-"
        table.add_row(n, f"{c.input_size[1]}x{c.input_size[0]}", str(c.embedding_dim), weights, c.licence,
                      spec.description)
    out.print(table)
