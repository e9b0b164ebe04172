"""Ensembles as models: the weighted-cosine identity against a naive reference, the folder, bad members."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facefit.errors import WeightsNotFoundError
from facefit.models import create_model, save_model
from facefit.models.ensemble import EnsembleEmbedder, fit_weights, normalise_weights
from facefit.models.ensemble_io import MemberSource, save_ensemble


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory):
    """dlib-resnet, and a second member that differs: the same weights with test-time flip, saved as a folder."""
    first = create_model("dlib-resnet")
    second = create_model("dlib-resnet")
    second.contract = replace(second.contract, flip_average=True, name="dlib-flip")
    folder = save_model(second, tmp_path_factory.mktemp("member") / "dlib-flip")
    return first, create_model(folder), folder


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_cosine_of_the_ensemble_is_the_weighted_mean_of_the_members(members, johns) -> None:
    first, second, _ = members
    chips = johns[0][:12]
    ens = EnsembleEmbedder([first, second], [3.0, 1.0])
    e = ens.embed(chips)
    assert e.shape == (12, 256) and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    i, j = np.triu_indices(12, 1)
    naive = 0.75 * _cos(first.embed(chips)[i], first.embed(chips)[j]) + \
        0.25 * _cos(second.embed(chips)[i], second.embed(chips)[j])
    assert np.abs(_cos(e[i], e[j]) - naive).max() < 1e-5


def test_contract_id_follows_members_and_weights(members) -> None:
    first, second, _ = members
    a = EnsembleEmbedder([first, second], [0.5, 0.5]).contract
    assert a.id == EnsembleEmbedder([first, second], [1, 1]).contract.id  # weights are scaled to sum to 1
    assert a.id != EnsembleEmbedder([first, second], [0.6, 0.4]).contract.id
    assert a.id != EnsembleEmbedder([second, first], [0.5, 0.5]).contract.id
    assert a.id != first.contract.id and a.distance == "cosine" and a.embedding_dim == 256
    assert [m["id"] for m in a.members] == [first.contract.id, second.contract.id]


def test_z_normalisation_weights_against_a_naive_z_score_sum() -> None:
    rng = np.random.default_rng(0)
    same = np.r_[np.ones(200, bool), np.zeros(800, bool)]
    s1 = np.where(same, 0.6, 0.1) + rng.normal(0, 0.05, 1000)
    s2 = np.where(same, 0.5, 0.2) + rng.normal(0, 0.20, 1000)
    w = fit_weights([s1, s2], same)
    z = [(s - s[~same].mean()) / s[~same].std() for s in (s1, s2)]
    naive = z[0] + z[1]
    fused = w[0] * s1 + w[1] * s2
    # The same scores up to a positive scale and a shift: the same order, so the same ROC.
    assert np.allclose(np.argsort(naive, kind="stable"), np.argsort(fused, kind="stable"))
    assert w[0] > w[1] and sum(w) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fit_weights([s1], np.ones(1000, bool))
    with pytest.raises(ValueError):
        normalise_weights([1.0, -1.0], 2)


def test_folder_round_trip_and_bad_members(members, johns, tmp_path: Path) -> None:
    first, second, folder = members
    ens = EnsembleEmbedder([first, second], [0.6, 0.4])
    out = save_ensemble(ens, [MemberSource(name="dlib-resnet"), MemberSource(folder=folder)], tmp_path / "ens")
    loaded = create_model(out)
    assert loaded.contract.id == ens.contract.id and loaded.recipes == ens.recipes
    assert np.allclose(loaded.embed(johns[0][:4]), ens.embed(johns[0][:4]), atol=1e-6)

    weights = out / "members" / "1" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(WeightsNotFoundError, match="member 2.*sha256"):
        create_model(out)
    weights.unlink()
    (out / "members" / "1" / "facefit-model.json").unlink()
    with pytest.raises(WeightsNotFoundError, match="member 2.*missing"):
        create_model(out)

    out2 = save_ensemble(ens, [MemberSource(name="dlib-resnet"), MemberSource(folder=folder)], tmp_path / "ens2")
    meta = json.loads((out2 / "facefit-model.json").read_text())
    meta["metadata"]["ensemble"]["weights"] = [0.9, 0.1]
    (out2 / "facefit-model.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsNotFoundError, match="edited"):
        create_model(out2)


def test_a_gallery_refuses_to_mix_an_ensemble_with_its_member(members, yale_files, tmp_path: Path) -> None:
    from facefit import detect_and_align
    from facefit.gallery.gallery import Gallery
    from facefit.gallery.store import ContractMismatchError

    first, second, _ = members
    ens = EnsembleEmbedder([first, second], [0.5, 0.5])
    photos = [p for p in yale_files if p.parent.name == "subject01"][:2] or yale_files[:2]
    with Gallery.open(tmp_path / "g.sqlite") as g:
        assert len(g.add("subject01", [photos[0]], ens).added) == 1
        with pytest.raises(ContractMismatchError, match="reembed"):
            g.add("subject01", [photos[1]], first)
        faces = detect_and_align(photos[1], faces="largest", recipe=ens.recipes[0])
        found = g.identify(ens.embed_faces(faces), ens, threshold=0.3)
        assert found[0].name == "subject01"
