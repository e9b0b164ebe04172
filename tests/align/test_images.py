"""Image loading: every common format of a real face comes out upright RGB; bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.align import detect_and_align
from facefit.errors import ImageError
from facefit.io import load_image


@pytest.fixture(scope="module")
def face_rgb(yale_files) -> np.ndarray:
    return load_image(yale_files[1])  # grey GIF data in a .png name, 320x243


@pytest.fixture(scope="module")
def face_box(face_rgb) -> tuple[float, ...]:
    faces = detect_and_align(face_rgb)
    assert len(faces) == 1
    return faces[0].box


def test_gif_data_with_png_name_loads_as_rgb(face_rgb) -> None:
    assert face_rgb.shape == (243, 320, 3) and face_rgb.dtype == np.uint8
    assert (face_rgb[..., 0] == face_rgb[..., 1]).all()  # grey source


def _check_same_face(path: Path, face_box) -> np.ndarray:
    img = load_image(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    faces = detect_and_align(img)
    assert len(faces) == 1, path.name
    assert np.abs(np.subtract(faces[0].box, face_box)).max() <= 8, (faces[0].box, face_box)
    return img


def test_colour_modes(tmp_path: Path, face_rgb, face_box) -> None:
    grey = face_rgb[..., 0]
    h, w = grey.shape
    variants = {
        "rgb.png": Image.fromarray(face_rgb),
        "grey.png": Image.fromarray(grey),
        "palette.png": Image.fromarray(face_rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "bilevel.bmp": Image.fromarray(grey).convert("1"),
        "cmyk.jpg": Image.fromarray(face_rgb).convert("CMYK"),
        "grey16.png": Image.fromarray(grey.astype(np.uint16) * 257),
        "int32.tif": Image.fromarray(grey.astype(np.int32)),
        "float.tif": Image.fromarray(grey.astype(np.float32) / 255.0),
    }
    rgba = np.dstack([face_rgb, np.full((h, w), 255, np.uint8)])
    rgba[:, : w // 8, 3] = 0  # a transparent strip
    variants["rgba.png"] = Image.fromarray(rgba)
    modes = [variants[k].mode for k in ("grey16.png", "int32.tif", "float.tif", "rgba.png")]
    assert modes == ["I;16", "I", "F", "RGBA"]
    for name, im in variants.items():
        im.save(tmp_path / name)
        if name == "bilevel.bmp":
            assert load_image(tmp_path / name).shape == (h, w, 3)  # too coarse to expect a face
            continue
        img = _check_same_face(tmp_path / name, face_box)
        if name == "rgba.png":
            assert (img[:, : w // 8] == 255).all()  # transparent pixels composite on white
        if name in ("grey16.png", "int32.tif", "float.tif"):
            assert np.abs(img[..., 0].astype(int) - grey).max() <= 1


def test_16bit_rgb_png(tmp_path: Path, face_rgb, face_box) -> None:
    import cv2

    deep = face_rgb[..., ::-1].astype(np.uint16) * 257  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "rgb48.png"), deep)
    img = _check_same_face(tmp_path / "rgb48.png", face_box)
    assert np.abs(img.astype(int) - face_rgb).max() <= 1


@pytest.mark.parametrize("orientation,rotate", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_applied(tmp_path: Path, face_rgb, face_box, orientation, rotate) -> None:
    """A camera stores pixels sideways plus an orientation tag; the face must come out upright."""
    stored = Image.fromarray(face_rgb).transpose(rotate)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    stored.save(path, exif=exif, quality=95)
    img = load_image(path)
    assert img.shape == face_rgb.shape
    _check_same_face(path, face_box)


def test_multi_frame_takes_the_first(tmp_path: Path, face_rgb, face_box) -> None:
    frames = [Image.fromarray(face_rgb), Image.fromarray(np.zeros_like(face_rgb))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    _check_same_face(tmp_path / "anim.gif", face_box)


def test_bytes_input(yale_files) -> None:
    assert load_image(yale_files[1].read_bytes()).shape == (243, 320, 3)


def test_bad_files_name_the_file_and_reason(tmp_path: Path, yale_files) -> None:
    cases = {}
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty.jpg"] = "empty file"
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    cases["notes.jpg"] = "not an image"
    good = tmp_path / "good.jpg"
    Image.open(yale_files[0]).convert("RGB").save(good, quality=95)
    (tmp_path / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated.jpg"] = "truncated"
    (tmp_path / "folder.jpg").mkdir()
    cases["folder.jpg"] = "is a folder"
    cases["missing.jpg"] = "no such file"
    for name, reason in cases.items():
        with pytest.raises(ImageError, match=reason) as info:
            load_image(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name)), str(info.value)


def test_pixel_limit_guards_against_bombs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("L", (4000, 3000)).save(tmp_path / "big.png")  # a tiny file that decodes to 12 MP
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.png", limit_pixels=10_000_000)
    monkeypatch.setenv("FACEFIT_MAX_PIXELS", "1000000")
    with pytest.raises(ImageError, match="FACEFIT_MAX_PIXELS"):
        load_image(tmp_path / "big.png")
    monkeypatch.setenv("FACEFIT_MAX_PIXELS", "20000000")
    assert load_image(tmp_path / "big.png").shape == (3000, 4000, 3)
