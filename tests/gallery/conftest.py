"""Gallery fixtures: LFW persons with several photos (read in place, never copied into the repo)."""

from __future__ import annotations

import subprocess
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


def run_cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    """``facefit ARGS`` in this process (no interpreter and torch start-up per call), captured like a subprocess."""
    import contextlib
    import io
    import os

    from facefit.cli.app import main

    saved = {k: os.environ.get(k) for k in (env or {})}
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["facefit", *map(str, args)], code, out.getvalue(), err.getvalue())
