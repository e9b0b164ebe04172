"""Image input limits: the documented 100 MP cap (FACEFIT_MAX_PIXELS moves it both ways) and PNG metadata bombs
refused for what they are."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_run import cli
from PIL import Image

from facefit.errors import ImageError
from facefit.io.images import load_image


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9500 x 9500 = 90.25 MP: under the documented 100 MP, over Pillow's own 89.5 MP."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.new("L", (9500, 9500), 128).save(path)
    return path


def test_the_cap_is_the_documented_100_mp(big_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEFIT_MAX_PIXELS", raising=False)
    assert load_image(big_png).shape == (9500, 9500, 3)
    with pytest.raises(ImageError, match=r"90\.2 MP exceeds the 90 MP limit"):
        load_image(big_png, limit_pixels=90_000_000)


def test_facefit_max_pixels_raises_the_cap_beyond_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 13400 x 13400 = 179.6 MP: above twice Pillow's default cap, where Pillow refuses outright.
    path = tmp_path / "huge.png"
    Image.new("1", (13400, 13400)).save(path)
    monkeypatch.setenv("FACEFIT_MAX_PIXELS", "100000000")
    with pytest.raises(ImageError, match=r"179\.6 MP exceeds the 100 MP limit \(set FACEFIT_MAX_PIXELS"):
        load_image(path)
    monkeypatch.setenv("FACEFIT_MAX_PIXELS", "180000000")
    assert load_image(path).shape == (13400, 13400, 3)
    for bad in ("0", "-5", "lots"):
        monkeypatch.setenv("FACEFIT_MAX_PIXELS", bad)
        with pytest.raises(ImageError, match="not a whole number above 0"):
            load_image(path)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with(chunk: bytes, face: np.ndarray, after_pixels: bool = False) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, "PNG")
    png = buf.getvalue()
    at = png.rfind(b"IEND") - 4 if after_pixels else 8 + 25  # before IEND, or right after IHDR
    return png[:at] + chunk + png[at:]


def test_png_metadata_bombs_are_refused_as_bombs(johns_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    face = load_image(next((johns_dir / "John_Salley").glob("*.jpg")))
    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MB of zeros in ~64 KB
    files = {
        "iccp.png": _png_with(_chunk(b"iCCP", b"sRGB\0\0" + bomb), face),
        "ztxt.png": _png_with(_chunk(b"zTXt", b"Comment\0\0" + bomb), face),
        "ztxt_late.png": _png_with(_chunk(b"zTXt", b"Comment\0\0" + bomb), face, after_pixels=True),
        "itxt.png": _png_with(_chunk(b"iTXt", b"Comment\0\1\0\0\0" + bomb), face),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        for source in (tmp_path / name, data):
            with pytest.raises(ImageError, match="decompression bomb") as exc:
                load_image(source)
            assert "not an image file" not in str(exc.value) and "MAX_TEXT_CHUNK" not in str(exc.value)
    (tmp_path / "face.png").write_bytes(_png_with(b"", face))
    code, _, err = cli(["embed", tmp_path, "--out", tmp_path / "o.npz"], capsys)
    assert code == 3, err
    for name in files:
        assert f"{tmp_path / name}: refused: a compressed metadata chunk" in err
    assert "wrote 1 face embedding(s) from 1 of 5 image(s)" in err
