"""Weights out of ONNX graphs: quantized initializers dequantized to float, mapped to a module, cached.

An ONNX file is read as data, never run: its constant sub-graphs (``Constant``,
``DequantizeLinear``, ``Reshape`` of constants) are folded with numpy exactly as
ONNX defines them, and what remains is a list of compute layers (``OnnxLayer``)
with their constant inputs resolved. An architecture's ``checkpoint_filter_fn``
maps those layers to its state dict; the result is cached as safetensors keyed by
the ONNX file's sha256, in the same cache as ``facefit.models.weights``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefit.errors import WeightsNotFoundError
from facefit.io.assets import sha256_file
from facefit.models.base import FaceEmbedder
from facefit.models.weights import _cache_path, _load_cache, _save_cache

# Bumped whenever a conversion changes, so caches written by an older facefit are converted again.
SFACE_FORMAT = "sface-onnx/1"


@dataclass(frozen=True)
class OnnxLayer:
    """One compute node of an ONNX graph, with its constant inputs already evaluated."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: dict[int, np.ndarray] = field(default_factory=dict)  # input position -> value


def dequantize_linear(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None, *,
                      axis: int = 1, block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21): ``(x - zero_point) * scale`` in the scale's dtype.

    The scale (and zero point) is a scalar (per tensor), 1-D (per slice along ``axis``)
    or, with ``block_size > 0``, of ``x``'s rank with ``ceil(n / block_size)`` entries
    along ``axis`` (element ``i`` uses entry ``i // block_size``). The difference is
    taken in integers and rounded to float once, as onnxruntime does, so the weights
    are bit-identical to the ones the runtime multiplies with.
    """
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"DequantizeLinear of {x.dtype} data is not supported (integer types only)")
    scale = np.asarray(scale)
    zp = np.zeros_like(scale, dtype=x.dtype) if zero_point is None else np.asarray(zero_point)
    if zp.shape != scale.shape:
        raise ValueError(f"zero point shape {zp.shape} differs from scale shape {scale.shape}")
    if scale.ndim == 0 or (scale.size == 1 and block_size == 0):
        scale, zp = scale.reshape(()), zp.reshape(())
    else:
        axis = axis % x.ndim
        n = x.shape[axis]
        if block_size > 0:
            want = list(x.shape)
            want[axis] = math.ceil(n / block_size)
            if list(scale.shape) != want:
                raise ValueError(f"blocked scale shape {scale.shape} does not fit data {x.shape} "
                                 f"(axis {axis}, block size {block_size})")
            scale, zp = (np.take(np.repeat(t, block_size, axis=axis), np.arange(n), axis=axis) for t in (scale, zp))
        else:
            if scale.ndim != 1 or scale.shape[0] != n:
                raise ValueError(f"per-axis scale shape {scale.shape} does not fit data {x.shape} on axis {axis}")
            shape = [1] * x.ndim
            shape[axis] = n
            scale, zp = scale.reshape(shape), zp.reshape(shape)
    diff = x.astype(np.int64) - zp.astype(np.int64)
    return diff.astype(scale.dtype) * scale


def _reshape(data: np.ndarray, shape: np.ndarray, allowzero: int = 0) -> np.ndarray:
    """ONNX ``Reshape``: a 0 copies the input's dimension unless ``allowzero``; -1 is inferred."""
    dims = [int(d) for d in np.asarray(shape).reshape(-1)]
    if not allowzero:
        dims = [data.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return data.reshape(dims)


def _fold(op: str, values: list[np.ndarray | None], attrs: dict[str, Any]) -> np.ndarray:
    if op == "DequantizeLinear":
        x, scale, zp = (values + [None, None])[:3]
        return dequantize_linear(x, scale, zp, axis=int(attrs.get("axis", 1)),
                                 block_size=int(attrs.get("block_size", 0)))
    if op == "Reshape":
        return _reshape(values[0], values[1], int(attrs.get("allowzero", 0)))
    if op == "Identity":
        return values[0]
    raise AssertionError(op)


_FOLDABLE = ("DequantizeLinear", "Reshape", "Identity")


def read_onnx_layers(path: str | Path) -> list[OnnxLayer]:
    """The compute layers of an ONNX file, in graph order, with constant inputs folded to numpy arrays.

    Raises ``ValueError`` (or onnx's own errors) for a file that is not a readable ONNX model.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers: list[OnnxLayer] = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise ValueError(f"{node.name or node.output[0]}: only Constant nodes holding a tensor are supported")
            consts[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        named = [i for i in node.input if i]
        if node.op_type in _FOLDABLE and named and all(i in consts for i in named):
            values = [consts[i] if i else None for i in node.input]
            consts[node.output[0]] = _fold(node.op_type, values, attrs)
            continue
        layers.append(OnnxLayer(
            op=node.op_type,
            name=node.name or node.output[0],
            inputs=tuple(node.input),
            outputs=tuple(node.output),
            attrs={k: v for k, v in attrs.items() if not isinstance(v, (onnx.TensorProto, onnx.GraphProto))},
            consts={i: consts[name] for i, name in enumerate(node.input) if name in consts},
        ))
    if not layers:
        raise ValueError("the graph has no compute nodes")
    return layers


FilterFn = Callable[[Sequence[OnnxLayer], Any], dict[str, torch.Tensor]]


def onnx_state(model: FaceEmbedder, path: Path, filter_fn: FilterFn, fmt: str, what: str,
               digest: str | None = None) -> dict[str, torch.Tensor]:
    """``model``'s state dict from an ONNX file through ``filter_fn``, via the cache.

    The cache is keyed by the file's sha256 (and checked against ``fmt``), so a changed
    file or conversion never reuses a stale result. A file that is not ``what`` raises
    ``WeightsNotFoundError`` naming it, in one line.
    """
    digest = digest or sha256_file(path)
    cache = _cache_path(digest)
    cached = _load_cache(cache)
    if cached is not None and cached[1].get("format") == fmt:
        return cached[0]
    try:
        state = filter_fn(read_onnx_layers(path), model)
    except Exception as exc:  # protobuf, onnx and mapping errors all mean "not this model's file"
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise WeightsNotFoundError(f"{path}: not {what}: {reason}") from None
    _save_cache(cache, state, {"format": fmt, "source_sha256": digest})
    return state


def sface_onnx_state(model: FaceEmbedder, path: Path, digest: str | None = None) -> dict[str, torch.Tensor]:
    """State dict of an ``SFace`` from OpenCV Zoo's SFace ONNX file (int8 weights dequantized to float32)."""
    from facefit.models.sface import checkpoint_filter_fn

    return onnx_state(model, path, checkpoint_filter_fn, SFACE_FORMAT, "OpenCV Zoo's SFace ONNX graph", digest)
