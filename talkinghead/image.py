"""Turn an uploaded file into the 512×512 RGBA character image the poser takes, or say what is wrong with it."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

SIZE = 512
# Far above any real character sheet, far below what would exhaust memory when decoded.
MAX_PIXELS = 64 * 1024 * 1024


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
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; treat the warning as the error it is.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"the image is too large to decode safely (over {MAX_PIXELS // 2**20} megapixels); "
                             "send a 512x512 PNG") from None
        except Exception as e:  # Pillow raises many types for broken files
            raise ImageError(f"the file is not a readable image ({type(e).__name__}: {e}); "
                             "send a 512x512 RGBA PNG") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
    return image


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
