"""Turn an uploaded file into the 512×512 RGBA character image the poser takes, or say what is wrong with it."""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

SIZE = 512
# Far above any real character sheet (4096x4096), far below what would exhaust memory when decoded (64 MB as
# RGBA); checked from the header, before any pixel is decoded.
MAX_PIXELS = 4096 * 4096


class ImageError(ValueError):
    """The upload is not a usable character image; the message says what to fix."""


def load_character(data: bytes) -> np.ndarray:
    """Decode, check and fit an uploaded image: uint8 array 512×512×4, straight alpha."""
    if not data:
        raise ImageError("the uploaded file is empty; send a 512x512 PNG with a transparent background")
    image = _decode(data)
    if not _has_alpha(image):
        raise ImageError(f"the image has no alpha channel (mode {image.mode}); the character needs a "
                         "transparent background: save it as an RGBA PNG")
    rgba = np.asarray(_fit(image.convert("RGBA")), dtype=np.uint8).copy()
    rgba[rgba[:, :, 3] == 0] = 0  # colour under fully transparent pixels must not leak into the networks
    return rgba


def _decode(data: bytes) -> Image.Image:
    """Open, check the size from the header (before any pixel is decoded), verify, then decode."""
    with warnings.catch_warnings():
        # Pillow's own guard stays on; its warning (between its limit and twice that) is an error here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _open(data)
            if image.width * image.height > MAX_PIXELS:
                raise Image.DecompressionBombError("over MAX_PIXELS")
            image.verify()  # checksums and structure, without decoding (PNG: every chunk's CRC)
            image = _open(data)  # verify() leaves the image unusable: open it again to decode
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"the image is too large to decode safely (over {MAX_PIXELS // 2**20} megapixels); "
                             "send a 512x512 PNG") from None
        except UnidentifiedImageError:
            raise ImageError("the file is not a readable image (no image format Pillow reads: PNG, WebP, "
                             "GIF, ...); send a 512x512 RGBA PNG") from None
        except Exception as e:  # Pillow raises many types for broken files
            raise ImageError(f"the file is not a readable image ({_reason(e)}); send a 512x512 RGBA PNG") from None
    return image


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _reason(e: Exception) -> str:
    """What broke, for the user: the exception's type and message without object reprs (`<… at 0x…>`)."""
    message = _REPR.sub("the file", str(e)).strip()
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _fit(image: Image.Image) -> Image.Image:
    """Scale down to fit 512×512 (aspect kept, never enlarged) and centre on a transparent canvas."""
    if image.size == (SIZE, SIZE):
        return image
    scale = min(1.0, SIZE / image.width, SIZE / image.height)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # Resample premultiplied, so colour under transparent pixels does not bleed into the edges.
        image = image.convert("RGBa").resize(size, Image.LANCZOS).convert("RGBA")
    canvas = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
    return canvas
