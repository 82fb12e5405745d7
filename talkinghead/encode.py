"""Frames to bytes for the wire: PNG (RGBA, straight alpha, fast compression) or JPEG over a background colour.

Every viewer of the PNG stream costs one encode per frame (25 per second), on the same 2 cores that render
them, so the encoders are picked for speed (512x512 RGBA frame of lambda_00, one core of a Zen 4 EPYC):
- PNG: Pillow, even at compress_level=1, tries all five PNG row filters on every row: 12.5 ms a frame.
  We write the PNG ourselves with the "none" filter and zlib-ng level 2: 2-3 ms, and the same size
  (126 KB, Pillow: 128 KB). Any PNG decoder reads it (a PNG is a header, one zlib stream of filtered rows
  and an end marker; tests decode it with Pillow).
- JPEG: compositing over the background with Pillow's paste (C, the same rounding as (c*a + bg*(255-a) +
  127) // 255) instead of numpy uint16 arithmetic: 0.9 ms instead of 7 ms, then simplejpeg ~1 ms.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import simplejpeg
from PIL import Image

try:  # zlib-ng: the same deflate streams, 3x faster at low levels; the standard zlib if it is missing
    from zlib_ng import zlib_ng as _deflate
except ImportError:  # pragma: no cover - zlib-ng is in requirements.txt
    _deflate = zlib

JPEG_QUALITY = 90
PNG_LEVEL = 2  # zlib-ng level 1 is ~1 ms faster but 25 % larger; level 2 matches Pillow's level-1 size
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_RGBA8 = (8, 6, 0, 0, 0)  # bit depth 8, colour type 6 (RGBA), deflate, adaptive filtering, no interlace
_FILTER_NONE = 0


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(rgba: np.ndarray) -> bytes:
    """uint8 (H, W, 4) straight-alpha RGBA -> PNG bytes."""
    h, w, channels = rgba.shape
    if rgba.dtype != np.uint8 or channels != 4:
        raise ValueError(f"expected uint8 (H, W, 4) RGBA, got {rgba.dtype} {rgba.shape}")
    rows = np.empty((h, 1 + 4 * w), dtype=np.uint8)
    rows[:, 0] = _FILTER_NONE  # each row starts with its filter type
    rows[:, 1:] = rgba.reshape(h, 4 * w)
    return b"".join((_PNG_SIGNATURE,
                     _chunk(b"IHDR", struct.pack(">II5B", w, h, *_PNG_RGBA8)),
                     _chunk(b"IDAT", _deflate.compress(rows.tobytes(), PNG_LEVEL)),
                     _chunk(b"IEND", b"")))


def jpeg(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """uint8 (H, W, 4) straight-alpha RGBA composited over `background` -> JPEG bytes."""
    h, w, _ = rgba.shape
    rgb = Image.new("RGB", (w, h), tuple(background))
    rgb.paste(Image.fromarray(rgba[:, :, :3], "RGB"), mask=Image.fromarray(np.ascontiguousarray(rgba[:, :, 3]), "L"))
    return simplejpeg.encode_jpeg(np.asarray(rgb), quality=JPEG_QUALITY, colorspace="RGB")


def parse_background(text: str | None) -> tuple[int, int, int]:
    """`RRGGBB` (optionally with '#') → (r, g, b); None → white. Raises ValueError on anything else."""
    if text is None or text == "":
        return (255, 255, 255)
    value = text.lstrip("#")
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(f"bg must be a colour as RRGGBB hex digits, e.g. bg=00ff00; got {text!r}")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
