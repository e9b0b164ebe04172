"""Export a face embedder to ONNX as one self-contained graph: raw pixels in, embedding out.

The graph holds the whole preprocessing (colour order, the contract's mean/std,
the test-time mirror average of a ``flip_average`` contract), so a consumer
feeds float32 pixels 0-255 and needs nothing from facefit. A model whose
``onnx_input_order`` is ``"BGR"`` takes OpenCV's channel order instead of RGB.

Every export is checked against PyTorch with onnxruntime before it is moved into
place, and a ``FILE.json`` sidecar records the contract, the input layout and the
measured parity.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facefit.errors import FacefitError, OutputExistsError, UsageError
from facefit.models.base import FaceEmbedder

INPUT_NAME = "data"  # what OpenCV Zoo's SFace calls its input; FaceRecognizerSF feeds the only input anyway
OUTPUT_NAME = "embedding"
DEFAULT_OPSET = 17  # read by onnxruntime >= 1.13 and OpenCV's DNN module alike
MIN_OPSET = 11
DEFAULT_TOLERANCE = 1e-4
SIDECAR_FORMAT = "facefit-onnx"
SIDECAR_VERSION = 1
RANDOM_PARITY_CHIPS = 4
INPUT_ORDERS = ("RGB", "BGR")


class OnnxExportError(FacefitError):
    """The model cannot be exported, or the exported graph does not compute what the model does."""


@dataclass(frozen=True)
class ExportReport:
    """What was written and how well it matches PyTorch."""

    path: Path
    sidecar: Path
    model: str  # the model's name, for messages
    contract_id: str
    opset: int
    input_order: str  # colour order of the graph's input, "RGB" or "BGR"
    input_size: tuple[int, int]  # (height, width)
    embedding_dim: int
    flip_average: bool
    size_bytes: int
    parity_checked: bool
    max_abs_diff: float | None  # over every embedding of every parity run; None when not checked
    tolerance: float | None  # the absolute bound the diff was held to
    embedding_scale: float | None  # largest |value| of the reference embeddings
    parity_inputs: str  # what the parity check ran on, or why it did not run

    def parity_dict(self) -> dict[str, Any]:
        return {"checked": self.parity_checked, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                "embedding_scale": self.embedding_scale, "inputs": self.parity_inputs}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"], data["sidecar"] = str(self.path), str(self.sidecar)
        data["input_size"] = list(self.input_size)
        return data


def sidecar_path(path: str | os.PathLike) -> Path:
    """``FILE.json`` beside ``FILE``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def max_opset() -> int:
    """The newest opset the TorchScript-based exporter writes."""
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET  # private, hence the fallback
    except ImportError:
        return 20
    return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def check_opset(opset: int) -> int:
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise UsageError(f"--opset must be between {MIN_OPSET} and {top} (torch {torch.__version__}), got {opset}")
    return opset


def check_export_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse, in one line, an output that cannot or must not be written; creates nothing.

    Unlike other outputs, a missing folder is not created: an export path is
    usually typed by hand, and a typo should not leave folders behind.
    """
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give a file name for the .onnx file")
    parent = out.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{out}: cannot be written: {folder} is a file, not a folder")
            break
    if not parent.is_dir():
        raise UsageError(f"{out}: cannot be written: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: cannot be written: the folder {parent} is not writable")
    for target in (out, sidecar_path(out)):
        if target.exists() and not overwrite:
            raise OutputExistsError(target)
        if target.is_dir():
            raise UsageError(f"{target}: is a folder; cannot replace it with a file")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces it only if the block succeeds; removed otherwise."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be written: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; an export is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class RawPixelGraph(nn.Module):
    """Wraps an inference network so it takes float (N, 3, H, W) pixels 0-255 in ``input_order``."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, *, input_order: str,
                 flip_average: bool, width: int) -> None:
        super().__init__()
        self.net = net
        self.flip_average = flip_average
        self.bgr = input_order == "BGR"
        # Channel swap and mirror as Gather with constant indices, not Slice with a negative step: every
        # runtime (OpenCV's DNN importer included) supports Gather.
        self.register_buffer("_rgb_from_bgr", torch.tensor([2, 1, 0]))
        self.register_buffer("_mirror", torch.arange(width - 1, -1, -1))
        self.register_buffer("_mean", mean.detach().clone().float().view(1, 3, 1, 1))
        self.register_buffer("_std", std.detach().clone().float().view(1, 3, 1, 1))

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        x = data.index_select(1, self._rgb_from_bgr) if self.bgr else data
        x = (x - self._mean) / self._std  # the same ops as FaceEmbedder.normalize, so rounding matches too
        if not self.flip_average:
            return self.net(x)
        y = self.net(torch.cat([x, x.index_select(3, self._mirror)]))
        # A reshape with a constant shape splits the two halves without any Shape/Slice arithmetic.
        y = y.reshape(2, -1, y.shape[-1])
        return (y[0] + y[1]) / 2


def model_label(model: FaceEmbedder) -> str:
    return model.contract.name or model.contract.architecture


def raw_pixel_graph(model: FaceEmbedder) -> RawPixelGraph:
    """The frozen, folded inference copy of ``model`` behind the preprocessing, on the CPU in float32."""
    order = str(getattr(model, "onnx_input_order", "RGB")).upper()
    if order not in INPUT_ORDERS:
        raise UsageError(f"{model_label(model)}: onnx_input_order must be RGB or BGR, got {order!r}")
    net = model.inference_copy().eval().float().cpu()
    for p in net.parameters():
        p.requires_grad_(False)
    c = model.contract
    graph = RawPixelGraph(net, torch.tensor(c.mean), torch.tensor(c.std), input_order=order,
                          flip_average=c.flip_average, width=c.input_size[1])
    return graph.eval()


def _short_reason(exc: BaseException) -> str:
    """The first line of an exporter error, without its boilerplate plea for a pull request."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for cut in (" Please feel free", " Please open", " Please report"):
        text = text.split(cut)[0]
    text = text.strip()
    return text if len(text) <= 300 else text[:297] + "..."


def _export(graph: RawPixelGraph, sample: torch.Tensor, path: Path, opset: int, label: str) -> None:
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript;
            # its warnings (and tracer notes on shape arithmetic) say nothing actionable to a user.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (sample,), str(path), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True, export_params=True,
            )
    except FacefitError:
        raise
    except Exception as exc:
        raise OnnxExportError(f"{label}: cannot export to ONNX opset {opset}: {_short_reason(exc)}") from None
    try:
        import onnx

        onnx.checker.check_model(str(path))
    except Exception as exc:  # a graph the exporter wrote but ONNX itself rejects
        raise OnnxExportError(f"{label}: the exported ONNX graph is invalid: {_short_reason(exc)}") from None


def have_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _random_chips(model: FaceEmbedder, n: int = RANDOM_PARITY_CHIPS) -> np.ndarray:
    h, w = model.contract.input_size
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def pixels_for_graph(chips: np.ndarray, input_order: str) -> np.ndarray:
    """uint8 RGB chips (N, H, W, 3) -> the graph's input: float32 (N, 3, H, W) in ``input_order``."""
    arr = chips[..., ::-1] if input_order == "BGR" else chips
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32)


def _check_parity(model: FaceEmbedder, path: Path, chips: np.ndarray, input_order: str,
                  tolerance: float, label: str) -> tuple[float, float, float]:
    """Run the file and the model on ``chips`` (whole batch, then the first alone); returns (diff, bound, scale)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxExportError(f"{label}: onnxruntime cannot load the exported graph: {_short_reason(exc)}") from None
    reference = model.embed_at(chips, torch.float32)  # parity is with the fp32 network, whatever precision runs
    diff = 0.0
    # The whole batch and a batch of one: a graph whose batch axis was frozen at trace time fails one of them.
    for sub, ref in ((chips, reference), (chips[:1], reference[:1])):
        try:
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels_for_graph(sub, input_order)})
        except Exception as exc:
            raise OnnxExportError(f"{label}: onnxruntime cannot run the exported graph on a batch of {len(sub)}: "
                                  f"{_short_reason(exc)}") from None
        if got.shape != ref.shape:
            raise OnnxExportError(f"{label}: the exported graph gives shape {got.shape} for a batch of {len(sub)}; "
                                  f"expected {ref.shape}")
        diff = max(diff, float(np.abs(got.astype(np.float64) - ref).max()))
    scale = float(np.abs(reference).max())
    # An absolute bound for embeddings of magnitude <= 1 (dlib ~0.1-0.3, SFace ~1), relative beyond that
    # (raw ArcFace outputs reach tens), since float32 rounding grows with the magnitude.
    bound = tolerance * max(1.0, scale)
    if not diff <= bound:  # also catches NaN
        raise OnnxExportError(f"{label}: the exported graph does not match PyTorch: max abs diff {diff:.3g} > "
                              f"{bound:.3g}; nothing written")
    return diff, bound, scale


def _sidecar_doc(model: FaceEmbedder, report: ExportReport) -> dict[str, Any]:
    import onnx

    import facefit

    c = model.contract
    h, w = c.input_size
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "file": report.path.name,
        "model": report.model,
        "contract": c.to_dict(),
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["N", 3, h, w],
            "layout": "NCHW",
            "colour_order": report.input_order,
            "value_range": [0, 255],
            "note": (f"aligned {h}x{w} chips ({c.align.method}), raw pixel values; the graph subtracts the "
                     f"contract's mean and divides by its std itself (mean/std are listed in RGB order)"
                     + ("; it also averages each chip's embedding with its mirror image's"
                        if c.flip_average else "")),
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", c.embedding_dim],
                   "normalized": c.normalized, "distance": c.distance, "thresholds": dict(c.thresholds)},
        "opset": report.opset,
        "parity": report.parity_dict(),
        "exported_with": {"facefit": facefit.__version__, "torch": torch.__version__, "onnx": onnx.__version__},
    }


def export_onnx(
    model: FaceEmbedder,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    chips: np.ndarray | None = None,
    chips_note: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportReport:
    """Write ``model`` as an ONNX graph on raw pixels at ``path``, and ``path.json`` beside it.

    ``chips`` (uint8 RGB (N, H, W, 3) aligned chips, ``chips_note`` saying what they
    are) feed the parity check; without them a fixed random batch does. The file is
    verified with onnxruntime before it replaces anything: a failed export or
    check leaves no file behind. Raises ``UsageError``/``OutputExistsError`` for
    a bad path (before any export work) and ``OnnxExportError`` when the model's
    ops do not map or the graph does not match PyTorch.
    """
    label = model_label(model)
    if getattr(model, "members", None):
        raise UsageError(f"{label}: is an ensemble, whose embedding needs several differently cropped chips; "
                         f"export its members one by one")
    check_opset(opset)
    out = check_export_path(path, overwrite)
    sidecar = sidecar_path(out)
    if chips is not None:
        chips = model.check_chips(chips)
        if len(chips) == 0:
            raise UsageError("the parity check needs at least one chip")
        note = chips_note or f"{len(chips)} given chips"
    else:
        chips, note = _random_chips(model), f"{RANDOM_PARITY_CHIPS} random-pixel chips (seed 0)"
    with ExitStack() as stack:
        # Both temporary files exist before the slow part, so an unwritable folder fails first.
        tmp_json = stack.enter_context(_staged(sidecar))
        tmp_onnx = stack.enter_context(_staged(out))  # entered last, so it is moved into place first
        graph = raw_pixel_graph(model)
        order = "BGR" if graph.bgr else "RGB"
        sample = torch.from_numpy(pixels_for_graph(chips[:2], order))
        if len(sample) < 2:  # trace with a batch of two, so no code path special-cases a batch of one
            sample = sample.repeat(2, 1, 1, 1)
        _export(graph, sample, tmp_onnx, opset, label)
        if have_onnxruntime():
            diff, bound, scale = _check_parity(model, tmp_onnx, chips, order, tolerance, label)
            parity = {"parity_checked": True, "max_abs_diff": diff, "tolerance": bound, "embedding_scale": scale,
                      "parity_inputs": note}
        else:
            parity = {"parity_checked": False, "max_abs_diff": None, "tolerance": None, "embedding_scale": None,
                      "parity_inputs": "not checked: onnxruntime is not installed"}
        c = model.contract
        report = ExportReport(
            path=out, sidecar=sidecar, model=label, contract_id=c.id, opset=opset, input_order=order,
            input_size=c.input_size, embedding_dim=c.embedding_dim, flip_average=c.flip_average,
            size_bytes=tmp_onnx.stat().st_size, **parity,
        )
        tmp_json.write_text(json.dumps(_sidecar_doc(model, report), indent=2, sort_keys=True) + "\n")
    return report
