"""ONNX export: raw-pixel graphs that match PyTorch, atomic writes, one-line errors, OpenCV drop-in."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facefit.errors import OutputExistsError, UsageError
from facefit.models.export_onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxExportError,
    export_onnx,
    pixels_for_graph,
    raw_pixel_graph,
    sidecar_path,
)

ort = pytest.importorskip("onnxruntime")

TOL = 1e-4


def run_onnx(path: Path, chips_rgb: np.ndarray, order: str = "RGB") -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: pixels_for_graph(chips_rgb, order)})
    return out


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def dlib_onnx(model, johns, tmp_path_factory: pytest.TempPathFactory):
    """dlib-resnet exported once for the module, its parity checked on 16 real chips."""
    path = tmp_path_factory.mktemp("export") / "dlib-resnet.onnx"
    report = export_onnx(model, path, chips=johns[0][:16], chips_note="16 johns chips")
    return path, report


@pytest.fixture()
def no_export(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if the export work starts; returns the call list."""
    calls: list[int] = []

    def refuse(*_args, **_kwargs) -> None:
        calls.append(1)
        raise AssertionError("the export ran although the path was refused")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    return calls


def test_dlib_resnet_matches_pytorch_at_any_batch(dlib_onnx, model, johns) -> None:
    path, report = dlib_onnx
    assert report.parity_checked and report.max_abs_diff is not None and report.max_abs_diff <= TOL
    assert report.input_order == "RGB" and report.input_size == (150, 150) and report.embedding_dim == 128
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME) and inp.type == "tensor(float)"
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 150, 150]  # a named, dynamic batch axis
    assert isinstance(out.shape[0], str) and out.shape[1] == 128
    chips = johns[0]
    for n in (1, 37):  # 37 > the batch of 2 traced and the 16 of the built-in check
        got = run_onnx(path, chips[:n])
        want = model.embed(chips[:n])
        assert got.shape == (n, 128)
        assert np.abs(got - want).max() <= TOL


def test_sidecar_tells_a_consumer_how_to_feed_the_graph(dlib_onnx, model) -> None:
    path, report = dlib_onnx
    doc = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "dlib-resnet.onnx.json"
    assert doc["contract"] == model.contract.to_dict()
    assert doc["input"]["name"] == "data" and doc["input"]["colour_order"] == "RGB"
    assert doc["input"]["value_range"] == [0, 255] and doc["input"]["shape"] == ["N", 3, 150, 150]
    assert doc["output"]["name"] == "embedding" and doc["output"]["shape"] == ["N", 128]
    assert doc["parity"]["checked"] is True and doc["parity"]["max_abs_diff"] == report.max_abs_diff
    assert doc["parity"]["inputs"] == "16 johns chips" and doc["opset"] == report.opset
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # an ordinary file, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_flip_average_is_computed_by_the_graph(model, johns, tmp_path: Path) -> None:
    flipped = copy.deepcopy(model)
    flipped.contract = replace(model.contract, flip_average=True)
    path = tmp_path / "flip.onnx"
    chips = johns[0][:5]
    report = export_onnx(flipped, path, chips=chips)
    assert report.flip_average and report.max_abs_diff <= TOL
    got = run_onnx(path, chips)
    assert np.abs(got - flipped.embed(chips)).max() <= TOL
    assert np.abs(got - model.embed(chips)).max() > 1e-3  # the mirror really went into the graph
    assert json.loads(sidecar_path(path).read_text())["contract"]["flip_average"] is True


def test_bgr_input_order_reverses_channels_in_the_graph(model, johns) -> None:
    """Checked on the PyTorch wrapper (cheap); the SFace test below covers a BGR graph end to end."""
    bgr_model = copy.deepcopy(model)
    bgr_model.onnx_input_order = "BGR"
    chips = johns[0][:3]
    with torch.no_grad():
        got = raw_pixel_graph(bgr_model)(torch.from_numpy(pixels_for_graph(chips, "BGR"))).numpy()
    assert np.abs(got - model.embed(chips)).max() <= TOL


def test_ensembles_are_refused(model, tmp_path: Path, no_export) -> None:
    ens = copy.deepcopy(model)
    ens.members = ["a", "b"]
    with pytest.raises(UsageError, match="ensemble.*member"):
        export_onnx(ens, tmp_path / "e.onnx")
    assert listing(tmp_path) == [] and not no_export


@pytest.mark.parametrize("where", ["under-a-file", "missing-folder"])
def test_unwritable_path_fails_before_any_work(model, tmp_path: Path, no_export, where: str) -> None:
    (tmp_path / "plain").write_text("a file")
    target = tmp_path / "plain" / "m.onnx" if where == "under-a-file" else tmp_path / "nope" / "m.onnx"
    with pytest.raises(UsageError, match="cannot be written") as err:
        export_onnx(model, target)
    assert "\n" not in str(err.value)
    assert listing(tmp_path) == ["plain"] and not no_export


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_fails_before_any_work(model, tmp_path: Path, no_export) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="not writable"):
            export_onnx(model, folder / "m.onnx")
        assert listing(folder) == [] and not no_export
    finally:
        folder.chmod(0o755)


def test_refused_temp_file_fails_before_any_work(model, tmp_path: Path, no_export,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only folder does for a non-root user (tests often run as root, who may write anywhere)."""
    import tempfile

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(UsageError, match="m.onnx.*Permission denied"):
        export_onnx(model, tmp_path / "m.onnx")
    assert listing(tmp_path) == [] and not no_export


def test_existing_files_are_kept_without_overwrite(model, tmp_path: Path, no_export) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"user's file")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_onnx(model, out)
    out.unlink()
    sidecar_path(out).write_text("{}")  # a sidecar alone is a user's file too
    with pytest.raises(OutputExistsError, match=r"m\.onnx\.json"):
        export_onnx(model, out)
    assert listing(tmp_path) == ["m.onnx.json"] and not no_export
    with pytest.raises(UsageError, match="opset"):
        export_onnx(model, out, opset=5)


def test_export_failure_names_the_model_and_op_and_leaves_nothing(model, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*_args, **_kwargs) -> None:
        raise RuntimeError("Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not supported. "
                           "Please feel free to request support or submit a pull request on PyTorch GitHub.\nmore")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old export")
    sidecar_path(out).write_text("old sidecar")
    with pytest.raises(OnnxExportError) as err:
        export_onnx(model, out, overwrite=True)
    message = str(err.value)
    assert message.startswith("dlib-resnet: cannot export to ONNX opset 17:") and "aten::frobnicate" in message
    assert "\n" not in message and "Please" not in message
    assert listing(tmp_path) == ["m.onnx", "m.onnx.json"]  # no temp files; the old files untouched
    assert out.read_bytes() == b"old export" and sidecar_path(out).read_text() == "old sidecar"


class _Stub(torch.nn.Module):
    """A tiny stand-in for the raw-pixel graph: exports in a blink, and computes something else."""

    bgr = False

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        return data.flatten(1)[:, :128] / 255


def test_parity_failure_writes_nothing(model, johns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.models.export_onnx as mod

    monkeypatch.setattr(mod, "raw_pixel_graph", lambda _model: _Stub())
    with pytest.raises(OnnxExportError, match="does not match PyTorch: max abs diff"):
        export_onnx(model, tmp_path / "m.onnx", chips=johns[0][:2])
    assert listing(tmp_path) == []


def test_without_onnxruntime_parity_is_reported_unchecked(model, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.models.export_onnx as mod

    monkeypatch.setattr(mod, "raw_pixel_graph", lambda _model: _Stub())
    monkeypatch.setattr(mod, "have_onnxruntime", lambda: False)
    report = export_onnx(model, tmp_path / "m.onnx")
    assert not report.parity_checked and report.max_abs_diff is None
    assert "onnxruntime is not installed" in report.parity_inputs
    assert json.loads(sidecar_path(tmp_path / "m.onnx").read_text())["parity"]["checked"] is False
    assert listing(tmp_path) == ["m.onnx", "m.onnx.json"]


# ---- the command line ----------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str]:
    """Run ``facefit ARGS`` in-process through the real entry point (its error mapping included)."""
    from facefit.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr().err


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_cli_exports_a_fine_tuned_run_folder(model, tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from facefit.models import save_model
    from facefit.models.artifact import META_FILE

    save_model(copy.deepcopy(model), tmp_path / "run" / "model")  # the layout 'facefit train' writes
    monkeypatch.setenv("FACEFIT_DATA", str(tmp_path / "no-data"))
    (tmp_path / "no-data").mkdir()  # a data folder without chips: the check falls back to random pixels
    out = tmp_path / "out" / "run.onnx"
    out.parent.mkdir()
    code, err = cli(capsys, "export", tmp_path / "run", "--onnx", out, "--opset", "18")
    assert code == 0, err
    assert "input 'data' float32 (N, 3, 150, 150) RGB 0-255, output 'embedding' (N, 128)" in err
    assert "parity with PyTorch on 4 random-pixel chips" in err and "max abs diff" in err
    doc = json.loads(sidecar_path(out).read_text())
    saved = json.loads((tmp_path / "run" / "model" / META_FILE).read_text())["contract"]
    assert doc["contract"]["id"] == saved["id"] != model.contract.id and doc["opset"] == 18
    assert doc["parity"]["max_abs_diff"] <= TOL


def test_cli_errors_are_one_line(model, tmp_path: Path, capsys: pytest.CaptureFixture, no_export) -> None:
    (tmp_path / "taken.onnx").write_bytes(b"x")
    (tmp_path / "plain").write_text("x")
    cases = [
        (["dlib-resnet", "--onnx", tmp_path / "taken.onnx"], "already exists; pass --overwrite"),
        (["dlib-resnet", "--onnx", tmp_path / "nope" / "m.onnx"], "does not exist"),
        (["dlib-resnet", "--onnx", tmp_path / "plain" / "m.onnx"], "is a file, not a folder"),
        (["dlib-resnet", "--onnx", tmp_path], "is a folder"),
        (["dlib-resnet", "--onnx", tmp_path / "m.onnx", "--opset", "99"], "--opset must be between"),
        (["no-such-model", "--onnx", tmp_path / "m.onnx"], "unknown model 'no-such-model'"),
    ]
    for args, expected in cases:
        code, err = cli(capsys, "export", *args)
        assert code != 0 and expected in one_line_error(err), (args, err)
    assert listing(tmp_path) == ["plain", "taken.onnx"] and not no_export


def test_cli_export_failure_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*_args, **_kwargs) -> None:
        raise RuntimeError("Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not supported.")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    code, err = cli(capsys, "export", "dlib-resnet", "--onnx", tmp_path / "m.onnx")
    line = one_line_error(err)
    assert code == 1 and "dlib-resnet: cannot export to ONNX" in line and "aten::frobnicate" in line
    assert listing(tmp_path) == []


# ---- OpenCV's FaceRecognizerSF -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sface_onnx(johns, tmp_path_factory: pytest.TempPathFactory):
    import facefit

    if "sface" not in facefit.list_models(pretrained=True):
        pytest.skip("the 'sface' model is not registered (with weights) in this checkout")
    import cv2

    from facefit.models import create_model

    net = create_model("sface")
    # Real faces, resized from dlib's 150x150 crop: parity needs real content, not the exact SFace crop.
    chips = np.stack([cv2.resize(c, (112, 112), interpolation=cv2.INTER_AREA) for c in johns[0][:6]])
    path = tmp_path_factory.mktemp("sface") / "sface.onnx"
    report = export_onnx(net, path, chips=chips)
    return net, path, report, chips


def test_sface_export_is_a_drop_in_for_opencv(sface_onnx) -> None:
    """cv2.FaceRecognizerSF loads the export; its features are facefit's embeddings and the original file's."""
    import cv2
    import onnx

    from facefit.io.assets import SFACE_ONNX, verified

    net, path, report, chips = sface_onnx
    assert report.max_abs_diff <= TOL * max(1.0, report.embedding_scale)
    ours = cv2.FaceRecognizerSF.create(str(path), "")
    # The shipped int8 file lists its (dequantized-inside) weights as dangling graph inputs, which OpenCV 5
    # refuses; pruning those unused inputs changes nothing else.
    original = onnx.load(str(verified(SFACE_ONNX)[0]))
    used = {name for node in original.graph.node for name in node.input}
    keep = [i for i in original.graph.input if i.name in used]
    del original.graph.input[:]
    original.graph.input.extend(keep)
    original_path = path.with_name("original.onnx")
    onnx.save(original, str(original_path))
    reference = cv2.FaceRecognizerSF.create(str(original_path), "")
    chips_bgr = np.ascontiguousarray(chips[..., ::-1])  # what OpenCV code holds
    got = np.concatenate([ours.feature(c) for c in chips_bgr])
    assert got.shape == (len(chips), 128)
    # |features| reach ~2.5, so the bound is 1e-4 relative to that scale.
    assert np.abs(got - net.embed(chips)).max() <= TOL * 3
    assert np.abs(got - np.concatenate([reference.feature(c) for c in chips_bgr])).max() <= TOL * 3
