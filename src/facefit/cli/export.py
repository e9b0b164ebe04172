"""``facefit export``: a model or fine-tuned run -> one ONNX graph on raw pixels, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from facefit.cli.common import info

if TYPE_CHECKING:  # only for type hints: importing them for real would slow down ``facefit --help``
    import numpy as np

DEFAULT_OPSET = 17  # mirrors facefit.models.export_onnx.DEFAULT_OPSET, which imports torch
PARITY_CHIPS = 16


def export(
    model: Annotated[str, typer.Argument(help="Model name, model folder, training run folder or dlib .dat file.",
                                         show_default=False)],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write; FILE.json is written beside it.",
                                       show_default=False)],
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = DEFAULT_OPSET,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder whose fixtures/johns chips feed the parity "
                                                             "check (default: $FACEFIT_DATA or ../shared/data; "
                                                             "random pixels without one).", show_default=False)]
    = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing ONNX file and its .json.")]
    = False,
) -> None:
    """Export a model to ONNX: float32 pixels 0-255 (N, 3, H, W) in, 'embedding' (N, D) out.

    The graph includes the preprocessing (the contract's mean/std, and the
    mirror average under a flip_average contract), so any ONNX runtime can use
    it on aligned chips as they are. Before the file is moved into place,
    onnxruntime runs it next to PyTorch on real chips (random pixels when no
    data folder is found) and the largest difference is reported. FILE.json
    records the embedding contract, the input layout and colour order, and
    that difference.
    """
    from facefit.models import create_model
    from facefit.models.export_onnx import check_export_path, check_opset, export_onnx

    check_opset(opset)
    out = check_export_path(onnx, overwrite)  # before loading anything: a bad path fails at once
    net = create_model(model)
    h, w = net.contract.input_size
    chips, note = _parity_chips(data, (h, w))
    report = export_onnx(net, out, opset=opset, overwrite=overwrite, chips=chips, chips_note=note)
    order = report.input_order
    info(f"wrote {out} ({report.size_bytes / 1e6:.1f} MB, opset {report.opset}): input 'data' float32 "
         f"(N, 3, {h}, {w}) {order} 0-255, output 'embedding' (N, {report.embedding_dim})"
         f"{', mirror-averaged' if report.flip_average else ''} [{report.contract_id}]")
    if report.parity_checked:
        info(f"parity with PyTorch on {report.parity_inputs}: max abs diff {report.max_abs_diff:.2e} "
             f"(bound {report.tolerance:.0e}, embedding values up to {report.embedding_scale:.3g})")
    else:
        info(f"parity not checked: {report.parity_inputs}")
    info(f"wrote {report.sidecar}")


def _parity_chips(data: Path | None, size: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """Up to 16 of dlib's example chips, resized when the model takes another size; None without data."""
    import numpy as np

    from facefit.io.assets import find_data_dir
    from facefit.io.images import load_image

    root = find_data_dir(data)
    folder = root / "fixtures" / "johns" if root is not None else None
    if folder is None or not folder.is_dir():
        return None, None
    paths = sorted(folder.glob("*/*.jpg"))[:PARITY_CHIPS]
    chips = [load_image(p) for p in paths]
    chips = [c for c in chips if c.ndim == 3 and c.shape[2] == 3]
    if not chips:
        return None, None
    h, w = size
    if any(c.shape[:2] != (h, w) for c in chips):
        import cv2

        # Real faces at the wrong crop are still a better numeric test than noise (parity, not accuracy).
        chips = [cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA) for c in chips]
        return np.stack(chips), f"{len(chips)} real face chips from {folder}, resized to {w}x{h}"
    return np.stack(chips), f"{len(chips)} real aligned chips from {folder}"
