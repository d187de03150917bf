"""Guards between an uploaded file and the face model.

Order matters: size in bytes, then the *header* (``Image.open`` is lazy: it reads
format and dimensions, no pixels), then the pixel cap, and only then decoding.
A 20000×20000 PNG of a few hundred KB (1.2 GB once decoded) is refused from its
header and never decoded (Pillow's own ``DecompressionBombError`` fires first for
such sizes; our 40 MP cap also holds if a process sets ``MAX_IMAGE_PIXELS = None``). Every failure is a :class:`BadImage` with an i18n key.
"""
from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from backend.faces.errors import BadImage

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 40  # a usable face is at least 40 px, so the picture must be too
MAX_SIDE = 1920  # longer side above this is scaled down before detection
log = logging.getLogger(__name__)

# Only these decoders are ever tried (``Image.open(formats=...)``): fewer parsers, less attack surface.
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")  # Pillow's JPEG opener also yields MPO (phone photos)
ALLOWED_FORMATS = frozenset({*OPEN_FORMATS, "MPO"})


@dataclass(frozen=True)
class PreparedImage:
    bgr: np.ndarray  # HxWx3 uint8, upright, longer side <= max_side
    scale: float  # bgr pixels per pixel of the upright original
    original_size: tuple[int, int]  # (width, height) of the upright original
    format: str
    rotation: int = 0  # degrees clockwise applied after EXIF (see FaceService.analyze)


def _err(key: str, **params) -> BadImage:
    return BadImage(f"faces.{key}", **params)


def load_image(
    data: bytes,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
    min_side: int = MIN_SIDE,
) -> PreparedImage:
    """Validate and decode an upload into an upright BGR array ready for detection."""
    if not data:
        raise _err("err_not_image")
    if len(data) > max_bytes:
        raise _err("err_too_large", max_mb=max_bytes // (1024 * 1024))

    # 1. header only
    try:
        im = Image.open(io.BytesIO(data), formats=OPEN_FORMATS)
    except Image.DecompressionBombError:
        raise _err("err_too_many_pixels", max_mp=max_pixels // 1_000_000) from None
    except UnidentifiedImageError:
        raise _err("err_not_image") from None
    except (OSError, SyntaxError, ValueError, EOFError):  # header cut off or malformed
        raise _err("err_truncated") from None

    try:
        fmt = im.format or ""
        if fmt not in ALLOWED_FORMATS:
            raise _err("err_format", format=fmt or "?")
        w, h = im.size
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise _err("err_too_many_pixels", max_mp=max_pixels // 1_000_000)
        if min(w, h) < min_side:
            raise _err("err_too_small", min_px=min_side)

        # 2. decode (JPEG: let libjpeg scale down by 1/2, 1/4, 1/8 while decoding)
        if fmt in ("JPEG", "MPO") and max(w, h) > 2 * max_side:
            im.draft("RGB", (max_side, max_side))
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # a process-wide Pillow switch; we never set it
            log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated photos are not refused")
        try:
            im.load()
        except Image.DecompressionBombError:
            raise _err("err_too_many_pixels", max_mp=max_pixels // 1_000_000) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error):
            raise _err("err_truncated") from None
        except MemoryError:
            raise _err("err_too_many_pixels", max_mp=max_pixels // 1_000_000) from None

        # 3. orientation, colour, size
        try:
            orientation = int(im.getexif().get(0x0112) or 1)
        except Exception:
            orientation = 1
        ow, oh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # malformed EXIF: keep the pixels as stored
            pass
        if im.mode != "RGB":
            im = _to_rgb(im)
        longer = max(im.size)
        if longer > max_side:
            f = max_side / longer
            new = (max(1, round(im.size[0] * f)), max(1, round(im.size[1] * f)))
            im = im.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
        scale = max(im.size) / max(ow, oh)
        rgb = np.asarray(im, dtype=np.uint8)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        return PreparedImage(bgr=bgr, scale=scale, original_size=(ow, oh), format=fmt)
    finally:
        im.close()


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / hi)).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def read_image_file(path: str | Path, *, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """Read a local file for the CLI, refusing oversized files before reading them."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise _err("err_unreadable", path=str(p)) from None
    if size > max_bytes:
        raise _err("err_too_large", max_mb=max_bytes // (1024 * 1024))
    return p.read_bytes()
