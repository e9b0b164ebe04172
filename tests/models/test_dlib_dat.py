"""The dlib .dat reader: a naive encoder written here, and the real file shipped with the weights."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from facefit.models.dlib_dat import DatFormatError, _Reader, parse_dlib_dat, read_dlib_dat


def enc_int(v: int) -> bytes:
    """dlib's integer encoding, written from the format description: control byte + LE magnitude."""
    mag = abs(v)
    body = b""
    while mag:
        body += bytes([mag & 0xFF])
        mag >>= 8
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def enc_float(x: float) -> bytes:
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= |m| < 1
    mant = int(m * (1 << 53))
    return enc_int(mant) + enc_int(e - 53)


@pytest.mark.parametrize("v", [0, 1, 2, 127, 128, 255, 256, 65535, 2**31 - 1, -1, -300, 2**40 + 3])
def test_integer_encoding(v: int) -> None:
    assert _Reader(enc_int(v)).int() == v


@pytest.mark.parametrize("x", [0.0, 1.0, -2.5, 122.782, 0.04, 1e-30, 3.4e38])
def test_float_encoding(x: float) -> None:
    assert _Reader(enc_float(x)).float() == pytest.approx(x, rel=1e-15, abs=0)


def test_special_floats() -> None:
    assert _Reader(enc_int(0) + enc_int(32000)).float() == math.inf
    assert _Reader(enc_int(0) + enc_int(32001)).float() == -math.inf
    assert math.isnan(_Reader(enc_int(0) + enc_int(32002)).float())


def test_tensor_is_raw_little_endian_float32() -> None:
    values = np.arange(6, dtype="<f4") - 2.5
    blob = enc_int(2) + b"".join(enc_int(d) for d in (1, 2, 3, 1)) + values.tobytes()
    out = _Reader(blob).tensor()
    assert out.shape == (1, 2, 3, 1)
    np.testing.assert_array_equal(out.reshape(-1), values)


def test_truncated_input_is_an_error() -> None:
    with pytest.raises(DatFormatError, match="unexpected end"):
        _Reader(enc_int(300)[:2]).int()


def test_real_resnet_file(models_dir) -> None:
    net = read_dlib_dat(models_dir / "dlib_face_recognition_resnet_model_v1.dat")
    kinds = Counter(layer.kind for layer in net.layers)
    assert kinds["con_4"] == 29 and kinds["affine_"] == 29 and kinds["relu_"] == 29
    assert kinds["add_prev_"] == 14 and kinds["avg_pool_2"] == 5 and kinds["max_pool_2"] == 1
    assert kinds["fc_2"] == 1 and kinds["tag/skip"] == 22
    assert net.loss.kind == "loss_metric_2"
    assert net.loss.params["margin"] == pytest.approx(0.04)
    assert net.loss.params["distance_threshold"] == pytest.approx(0.6)
    inp = net.layers[0].params
    assert inp["size"] == (150, 150)
    np.testing.assert_allclose(inp["mean_rgb"], (122.782, 117.001, 104.298), atol=1e-4)
    n_params = sum(v.size for layer in net.layers for v in layer.params.values() if isinstance(v, np.ndarray))
    assert n_params == 5_614_592
    fc = next(layer for layer in net.layers if layer.kind == "fc_2")
    assert fc.params["weight"].shape == (256, 128) and "bias" not in fc.params
    # strided convs have no padding; 3x3 stride-1 convs pad 1 (dlib's defaults)
    for layer in net.layers:
        if layer.kind == "con_4":
            stride, pad = layer.params["stride"], layer.params["padding"]
            assert pad == ((0, 0) if stride == (2, 2) else (1, 1))


def test_damaged_file_is_rejected(models_dir) -> None:
    data = (models_dir / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()
    with pytest.raises(DatFormatError):
        parse_dlib_dat(data[: len(data) // 2])
    with pytest.raises(DatFormatError, match="left over"):
        parse_dlib_dat(data + b"\x00")


def test_other_dlib_files_are_rejected(models_dir) -> None:
    with pytest.raises(DatFormatError):
        read_dlib_dat(models_dir / "shape_predictor_5_face_landmarks.dat")
    with pytest.raises(DatFormatError):
        parse_dlib_dat(b"definitely not a network")
