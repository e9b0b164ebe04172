"""Inference precision: the auto rule against its measurement, the per-machine cache, bad values, real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facefit.errors import PrecisionError
from facefit.models import create_model
from facefit.models import precision as prec
from facefit.models.precision import PrecisionChoice, choose_precision, requested_precision


@pytest.fixture
def dlib_model(model):  # the session's dlib-resnet, at a fresh precision request
    net = create_model("dlib-resnet", precision="auto")
    yield net


def _rates(fp32: float, bf16: float, cos: float, calls: list | None = None):
    def rates(model, chips):
        if calls is not None:
            calls.append(len(chips))
        return fp32, bf16, cos
    return rates


def _never(model, chips):
    raise AssertionError("measured although the choice was cached or settled")


def test_requested_precision_reads_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(prec.ENV_PRECISION, raising=False)
    assert requested_precision(None) == "auto"
    assert requested_precision(" BF16 ") == "bf16"
    monkeypatch.setenv(prec.ENV_PRECISION, "fp32")
    assert requested_precision(None) == "fp32" and requested_precision("auto") == "auto"
    monkeypatch.setenv(prec.ENV_PRECISION, "half")
    with pytest.raises(PrecisionError, match=r"unknown precision 'half' \(from \$FACEFIT_PRECISION\)"):
        requested_precision(None)
    with pytest.raises(PrecisionError, match="expected one of auto, fp32, bf16"):
        create_model("dlib-resnet", precision="int4")


@pytest.mark.parametrize("fp32,bf16,cos,want", [
    (100.0, 140.0, 0.99999, "bf16"),  # 1.4x and faithful
    (100.0, 129.0, 0.99999, "fp32"),  # faster, but under 1.3x
    (100.0, 300.0, 0.9998, "fp32"),   # fast but one embedding moved too far
    (100.0, 10.0, 0.99999, "fp32"),   # the AVX2/AVX-512-without-AMX case: 10x slower
])
def test_auto_keeps_bf16_only_when_faster_by_1_3x_and_faithful(dlib_model, tmp_path: Path, monkeypatch, fp32, bf16,
                                                               cos, want) -> None:
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    chips = np.zeros((3, 150, 150, 3), np.uint8)
    choice = choose_precision(dlib_model, "auto", chips, rates=_rates(fp32, bf16, cos), cache=tmp_path / "p.json")
    assert choice.precision == want and choice.source == "measured"
    assert choice.speedup == pytest.approx(bf16 / fp32)


def test_the_choice_is_cached_per_machine_and_model(dlib_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    cache, chips, calls = tmp_path / "p.json", np.zeros((2, 150, 150, 3), np.uint8), []
    first = choose_precision(dlib_model, "auto", chips, rates=_rates(100, 200, 1.0, calls), cache=cache)
    again = choose_precision(dlib_model, "auto", chips, rates=_never, cache=cache)
    assert (first.precision, again.precision, again.source, calls) == ("bf16", "bf16", "cached", [2])
    # --remeasure times again and replaces the entry
    redo = choose_precision(dlib_model, "auto", chips, rates=_rates(100, 50, 1.0, calls), cache=cache,
                            remeasure=True)
    assert redo.precision == "fp32" and choose_precision(dlib_model, "auto", chips, rates=_never,
                                                         cache=cache).precision == "fp32"
    # another model (contract) is measured on its own
    sface = create_model("sface", precision="auto")
    assert choose_precision(sface, "auto", np.zeros((1, 112, 112, 3), np.uint8), rates=_rates(100, 90, 1.0, calls),
                            cache=cache).source == "measured"
    # a choice made on another CPU, or another torch, is ignored and measured again
    here = prec.machine_identity()
    for other in ({"cpu": "Some Other CPU"}, {"torch": "1.0"}):
        monkeypatch.setattr(prec, "machine_identity", lambda other=other: {**here, **other})
        assert choose_precision(dlib_model, "auto", chips, rates=_rates(100, 200, 1.0, calls),
                                cache=cache).source == "measured"
    assert len(calls) == 5


def test_a_damaged_cache_is_measured_again(dlib_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    cache = tmp_path / "p.json"
    cache.write_text("{not json")
    chips = np.zeros((1, 150, 150, 3), np.uint8)
    assert choose_precision(dlib_model, "auto", chips, rates=_rates(1, 2, 1.0), cache=cache).source == "measured"


def test_without_bf16_auto_is_fp32_and_bf16_is_refused(dlib_model, monkeypatch) -> None:
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: "this CPU has no bf16 instructions")
    chips = np.zeros((1, 150, 150, 3), np.uint8)
    choice = choose_precision(dlib_model, "auto", chips, rates=_never)
    assert (choice.precision, choice.source) == ("fp32", "unsupported")
    assert "no bf16" in choice.describe()
    with pytest.raises(PrecisionError, match="bf16 cannot run here: this CPU has no bf16 instructions"):
        choose_precision(dlib_model, "bf16", chips, rates=_never)
    assert choose_precision(dlib_model, "fp32", chips, rates=_never) == PrecisionChoice("fp32", "asked")


def test_auto_on_this_machine_follows_its_own_measurement_on_real_faces(johns, tmp_path, monkeypatch) -> None:
    """The real thing: time both on dlib's example chips here; the choice is the rule applied to that timing."""
    if prec.bf16_unsupported(torch.device("cpu")):
        pytest.skip("no bf16 on this CPU: covered by the test above")
    monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path))
    chips = johns[0][:8]
    net = create_model("dlib-resnet", precision="auto")
    choice = net.resolve_precision(chips)
    assert choice.source == "measured" and choice.fp32_img_s > 0 and choice.bf16_img_s > 0
    rule = choice.bf16_img_s >= prec.MIN_SPEEDUP * choice.fp32_img_s and choice.min_cosine >= prec.MIN_COSINE
    assert choice.precision == ("bf16" if rule else "fp32")
    # bf16 keeps each real face where fp32 puts it (cosine), though not to fp32's last digits
    a, b = net.embed_at(chips, torch.float32), net.embed_at(chips, torch.bfloat16)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.999 and np.abs(a - b).max() > 0
    assert net.embed(chips).tobytes() == (b if choice.precision == "bf16" else a).tobytes()
    assert create_model("dlib-resnet", precision="auto").resolve_precision(chips).source == "cached"


def test_an_ensemble_runs_each_member_at_the_asked_precision() -> None:
    from facefit.models.ensemble import EnsembleEmbedder

    ens = EnsembleEmbedder([create_model("dlib-resnet"), create_model("sface")], [0.5, 0.5])
    ens.set_precision("fp32")
    assert ens.known_precision() == "fp32" and ens.precision == "fp32"
    assert all(m.precision_request == "fp32" for m in ens.members)


def test_empty_input_and_warm_up_leave_auto_unsettled(monkeypatch) -> None:
    monkeypatch.setattr(prec, "measure_rates", _never)
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    net = create_model("sface", pretrained=False, precision="auto")
    monkeypatch.setattr(prec, "_cache_path", lambda: Path("/nonexistent/precision.json"))
    assert net.embed(np.empty((0, 112, 112, 3), np.uint8)).shape == (0, net.embedding_dim)
    net.warm_up()  # blank chips are no faces: nothing is measured on them
    assert net.precision_choice is None and net.precision == "auto"


def test_concurrent_first_embeddings_measure_once(monkeypatch, tmp_path: Path) -> None:
    import threading
    import time

    calls = []

    def slow_rates(model, chips):
        calls.append(1)
        time.sleep(0.2)
        return 100.0, 50.0, 1.0

    monkeypatch.setattr(prec, "measure_rates", slow_rates)
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path))
    net = create_model("dlib-resnet", precision="auto")
    chips = np.zeros((1, 150, 150, 3), np.uint8)
    threads = [threading.Thread(target=net.embed, args=(chips,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and net.precision == "fp32"


def test_an_ensemble_of_one_recipe_settles_each_member(monkeypatch, tmp_path: Path) -> None:
    from facefit.models.ensemble import EnsembleEmbedder

    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    monkeypatch.setattr(prec, "measure_rates", lambda model, chips: (100.0, 200.0, 1.0))
    monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path))
    one = EnsembleEmbedder([create_model("sface", precision="auto"), create_model("sface", pretrained=False,
                                                                                  precision="fp32")], [0.5, 0.5])
    choice = one.resolve_precision(np.zeros((1, 112, 112, 3), np.uint8))
    assert choice.precision == "bf16+fp32" and "each member" in choice.describe()
    two = EnsembleEmbedder([create_model("sface"), create_model("dlib-resnet")], [0.5, 0.5])
    with pytest.raises(PrecisionError, match="their own chips"):
        two.resolve_precision(np.zeros((1, 112, 112, 3), np.uint8))
