"""Reader for dlib's binary serialization of a trained DNN (``*.dat``).

dlib writes a network as nested wrappers, outermost first: each wrapper writes
its version number and then its sub-network, so the input layer's details come
first in the byte stream and each layer's details follow on the way back out.
This module walks that stream without knowing the network type in advance and
returns every layer, innermost (input) first, with its parameters as numpy
arrays. It does no torch work: turning layers into a state dict is the job of
the architecture's ``checkpoint_filter_fn``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DatFormatError", "DlibLayer", "DlibNet", "read_dlib_dat", "parse_dlib_dat"]


class DatFormatError(ValueError):
    """The bytes are not a dlib DNN file of a kind this reader understands."""


@dataclass
class DlibLayer:
    """One entry of the network: a computational layer, a tag, a skip or the input."""

    kind: str  # details name ("con_4", "affine_", ...), or "tag", "skip", "input"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed network: the loss layer plus the layers from the input outwards."""

    loss: DlibLayer
    layers: list[DlibLayer]  # layers[0] is the input layer

    def count(self, kind: str) -> int:
        return sum(1 for layer in self.layers if layer.kind == kind)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise DatFormatError(f"unexpected end of file at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DatFormatError(f"bad integer control byte 0x{control:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return float("inf")
        if exponent == 32001:
            return float("-inf")
        if exponent == 32002:
            return float("nan")
        return float(mantissa) * 2.0**exponent

    def bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DatFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        return self._take(n).decode("latin-1")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DatFormatError(f"unsupported tensor version {version} at byte {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DatFormatError(f"unsupported alias tensor version {version} at byte {self.pos}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a flat parameter tensor into consecutive arrays of the alias shapes."""
    flat = params.reshape(-1)
    out, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(flat[offset : offset + n].reshape(shape).copy())
        offset += n
    if offset != flat.size:
        raise DatFormatError(f"parameter tensor has {flat.size} values, aliases cover {offset}")
    return out


def _read_details(r: _Reader) -> DlibLayer:
    name = r.string()
    if name == "con_4":
        params = r.tensor()
        num_filters, nr, nc = r.int(), r.int(), r.int()
        stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
        w_shape, b_shape = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        weight, bias = _split(params, w_shape, b_shape)
        return DlibLayer(name, {
            "weight": weight, "bias": bias.reshape(-1), "num_filters": num_filters,
            "kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x),
        })
    if name == "affine_":
        params = r.tensor()
        g_shape, b_shape = r.alias_tensor(), r.alias_tensor()
        mode = r.int()
        gamma, beta = _split(params, g_shape, b_shape)
        return DlibLayer(name, {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1), "mode": mode})
    if name == "relu_" or name == "add_prev_":
        return DlibLayer(name)
    if name in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        return DlibLayer(name, {"kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)})
    if name == "fc_2":
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor()
        w_shape, b_shape = r.alias_tensor(), r.alias_tensor()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        has_bias = bias_mode == 0
        shapes = [w_shape] + ([b_shape] if has_bias else [])
        parts = _split(params, *shapes)
        # dlib stores the fc weight as (inputs, outputs).
        weight = parts[0].reshape(num_inputs, num_outputs)
        layer = {"weight": weight, "num_inputs": num_inputs, "num_outputs": num_outputs}
        if has_bias:
            layer["bias"] = parts[1].reshape(-1)
        return DlibLayer(name, layer)
    if name == "input_rgb_image_sized":
        mean = (r.float(), r.float(), r.float())
        nr, nc = r.int(), r.int()
        return DlibLayer("input", {"mean_rgb": mean, "size": (nr, nc)})
    raise DatFormatError(f"unsupported layer type {name!r} at byte {r.pos}")


def _read_layer_state(r: _Reader, *, next_to_input: bool, version: int) -> None:
    """Skip the training state written after a layer's details."""
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if next_to_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # sample_expansion_factor
    elif version >= 2:
        r.tensor()  # params_grad


def parse_dlib_dat(data: bytes) -> DlibNet:
    """Parse a whole dlib DNN file; every byte must be accounted for."""
    r = _Reader(data)
    loss_version = r.int()
    if loss_version not in (1, 2):
        raise DatFormatError(f"not a dlib network file (loss layer version {loss_version})")
    loss_name = r.string()
    if not loss_name.startswith("loss_"):
        raise DatFormatError(f"not a dlib network file (expected a loss layer, found {loss_name!r})")
    loss_params: dict[str, Any] = {}
    if loss_name == "loss_metric_2":
        loss_params = {"margin": r.float(), "distance_threshold": r.float()}
    elif loss_name not in ("loss_metric_",):
        raise DatFormatError(f"unsupported loss layer {loss_name!r}")
    loss = DlibLayer(loss_name, loss_params)

    # Outer wrappers write only their version before recursing; a layer that sits
    # directly on the input layer has version 3 (or 2 in old files) and is the last.
    stack: list[int] = []
    while True:
        version = r.int()
        if version in (1,):
            stack.append(version)  # tag or skip: no details of its own
            continue
        if version == 2:
            # Either an ordinary layer or (in old files) the one next to the input:
            # peek whether an input layer's name follows.
            save = r.pos
            try:
                is_input = r.string().startswith("input")
            except DatFormatError:
                is_input = False
            r.pos = save
            if not is_input:
                stack.append(version)
                continue
        if version not in (2, 3):
            raise DatFormatError(f"unexpected wrapper version {version} at byte {r.pos}")
        input_layer = _read_details(r)
        if input_layer.kind != "input":
            raise DatFormatError(f"expected the input layer, found {input_layer.kind!r}")
        first = _read_details(r)
        _read_layer_state(r, next_to_input=True, version=version)
        break

    layers = [input_layer, first]
    for version in reversed(stack):
        if version == 1:
            layers.append(DlibLayer("tag/skip"))
            continue
        layer = _read_details(r)
        _read_layer_state(r, next_to_input=False, version=version)
        layers.append(layer)

    if r.pos != len(data):
        raise DatFormatError(f"{len(data) - r.pos} bytes left over after the network")
    return DlibNet(loss=loss, layers=layers)


def read_dlib_dat(path: str | Path) -> DlibNet:
    """Read and parse a dlib DNN ``.dat`` file."""
    return parse_dlib_dat(Path(path).read_bytes())

