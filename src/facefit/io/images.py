"""Robust image loading: any common file in, an RGB uint8 array out, or one clear error.

Handles EXIF orientation, grey, RGBA/LA (composited on white), palette,
16-bit and 32-bit integer, float and CMYK images, multi-frame files (first
frame), and guards against decompression bombs before decoding any pixels.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.errors import ImageError

DEFAULT_MAX_PIXELS = 100_000_000
ENV_MAX_PIXELS = "FACEFIT_MAX_PIXELS"
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".jfif"}
)


def max_pixels() -> int:
    """The pixel cap: ``FACEFIT_MAX_PIXELS`` when set (a whole number above 0), else 100 MP."""
    value = os.environ.get(ENV_MAX_PIXELS)
    try:
        limit = int(value) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        limit = 0
    if limit < 1:
        raise ImageError(None, f"{ENV_MAX_PIXELS}={value!r} is not a whole number above 0")
    return limit


def _lift_pillow_cap(limit: int) -> None:
    """Make Pillow's own bomb check (about 89.5 MP by default) no stricter than ``limit``.

    Pillow's cap is a process-wide setting; it is only ever raised here, to facefit's cap,
    which load_image checks itself before any pixel is decoded.
    """
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit


def _too_large(w: int, h: int, limit: int) -> str:
    return (f"image too large: {w}x{h} = {w * h / 1e6:.1f} MP exceeds the {limit / 1e6:g} MP limit "
            f"(set {ENV_MAX_PIXELS} to raise it)")


# Pillow's words for a compressed PNG chunk (iCCP profile, zTXt/iTXt text) that expands too far.
_CHUNK_BOMB = ("Decompressed data too large", "Too much memory used in text chunks")
CHUNK_BOMB_REASON = ("refused: a compressed metadata chunk (iCCP colour profile or zTXt/iTXt text) expands "
                     "far beyond any real one: a decompression bomb")


def link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be read (a loop, or a target that does not exist), or None."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            return "a symbolic link that loops back on itself"
        return f"a broken symbolic link (its target {os.readlink(path)} does not exist)"
    return None


def _to_uint8_rgb(im) -> np.ndarray:  # PIL.Image.Image, imported lazily
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        peak = float(arr.max(initial=0))
        if mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit integer: guess the bit depth the values were written with
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        grey = np.clip(np.nan_to_num(arr * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


@dataclass(frozen=True)
class ImageBytes:
    """An encoded image held in memory (an upload, a record of a .rec file) and the name to report it by."""

    name: str
    data: bytes


def load_image(source: str | os.PathLike | bytes | ImageBytes, *, limit_pixels: int | None = None,
               name: str | None = None, max_side: int | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as an RGB uint8 array (H, W, 3), upright.

    ``max_side``: a larger image comes back scaled down to fit it, decoded at a reduced scale where the
    format allows (JPEG), so a huge photo never costs its full size in memory.

    Raises ImageError naming the file (or ``name``, for bytes) and the reason for anything unreadable.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, ImageBytes):
        source, name = source.data, name or source.name
    if name is None:
        name = "<bytes>" if isinstance(source, bytes) else str(source)
    limit = limit_pixels if limit_pixels is not None else max_pixels()
    if isinstance(source, bytes) and not source:
        raise ImageError(name, "empty file (0 bytes)")
    if not isinstance(source, bytes):
        path = Path(source)
        if (link := link_problem(path)) is not None:
            raise ImageError(name, link)
        if not path.exists():
            raise ImageError(name, "no such file")
        if path.is_dir():
            raise ImageError(name, "is a folder, not an image")
        try:
            if path.stat().st_size == 0:
                raise ImageError(name, "empty file (0 bytes)")
        except OSError as exc:
            raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    _lift_pillow_cap(limit)
    try:
        with warnings.catch_warnings():
            # Our own cap is checked below; Pillow's hard error stays as the backstop for frames that grow.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise ImageError(name, f"invalid image size {w}x{h}")
                if w * h > limit:
                    raise ImageError(name, _too_large(w, h, limit))
                im.seek(0)
                if max_side is not None and max(w, h) > max_side:
                    im.thumbnail((max_side, max_side))  # before load: JPEG decodes at 1/2..1/8 scale
                im.load()
                if im.size[0] * im.size[1] > limit:  # a GIF frame may be larger than the screen it declared
                    raise ImageError(name, _too_large(*im.size, limit))
                im = ImageOps.exif_transpose(im) or im
                return _to_uint8_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image file (unknown or unsupported format)") from None
    except Image.DecompressionBombError:
        raise ImageError(name, f"image too large: more than the {limit / 1e6:g} MP limit "
                               f"(set {ENV_MAX_PIXELS} to raise it)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        reason = str(exc) or type(exc).__name__
        if any(words in reason for words in _CHUNK_BOMB):
            raise ImageError(name, CHUNK_BOMB_REASON) from None
        if "truncated" in reason:
            reason = "truncated or damaged image data"
        raise ImageError(name, f"cannot decode image: {reason}") from None


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
