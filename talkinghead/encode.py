"""Frames to bytes for the wire: PNG (RGBA, straight alpha, fast compression) or JPEG over a background colour."""
from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

JPEG_QUALITY = 90


def png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # Level 1: a frame must be encoded in a few ms; size matters less on localhost.
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def jpeg(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    bg = np.asarray(background, dtype=np.uint16)
    rgb = (rgba[:, :, :3].astype(np.uint16) * alpha + bg * (255 - alpha) + 127) // 255
    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb.astype(np.uint8)), quality=JPEG_QUALITY,
                                  colorspace="RGB")


def parse_background(text: str | None) -> tuple[int, int, int]:
    """`RRGGBB` (optionally with '#') → (r, g, b); None → white. Raises ValueError on anything else."""
    if text is None or text == "":
        return (255, 255, 255)
    value = text.lstrip("#")
    if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(f"bg must be a colour as RRGGBB hex digits, e.g. bg=00ff00; got {text!r}")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
