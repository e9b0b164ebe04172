"""Gallery fixtures: LFW persons with several photos (read in place, never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.gallery.records import NewFace

PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Silvio_Berlusconi", "Jean_Chretien", "Hans_Blix")


@pytest.fixture(scope="session")
def lfw_people(data_root: Path) -> dict[str, list[Path]]:
    """Six LFW persons with at least 8 photos (of the 7,701 in the shared copy) each (sorted)."""
    root = data_root / "lfw" / "images"
    people = {name: sorted((root / name).glob("*.jpg")) for name in PEOPLE}
    assert all(len(p) >= 8 for p in people.values()), {k: len(v) for k, v in people.items()}
    return people


def fake_face(rng: np.random.Generator, dim: int = 128, sha: str | None = None,
              box: tuple[float, float, float, float] = (10, 10, 60, 60)) -> NewFace:
    """A synthetic face record: random embedding and a few bytes standing in for the crop."""
    return NewFace(sha or rng.bytes(8).hex(), "synthetic.jpg", box, rng.standard_normal(dim).astype(np.float32),
                   rng.random((5, 2)).astype(np.float32) * 50, b"\xff\xd8fakejpeg", (5.0, 5.0, 40.0, 40.0),
                   0.9, 50.0, 100.0, "hog")
