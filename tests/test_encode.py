"""The bytes viewers get: PNG frames decode to exactly the rendered pixels, JPEG frames show them over the
background colour asked for."""
import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from talkinghead import encode


def _decode_png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGBA"
    return np.asarray(image)


@pytest.mark.parametrize("shape", [(512, 512, 4), (3, 7, 4), (1, 1, 4)])
def test_png_decodes_to_the_exact_pixels(shape):
    rgba = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(_decode_png(encode.png(rgba)), rgba)


def test_png_of_a_character_is_lossless_and_compressed(character_rgba):
    data = encode.png(character_rgba)
    assert np.array_equal(_decode_png(data), character_rgba)
    assert len(data) < character_rgba.nbytes / 4  # transparent background and flat colours compress


def test_png_rejects_what_is_not_rgba8():
    with pytest.raises(ValueError, match="RGBA"):
        encode.png(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="RGBA"):
        encode.png(np.zeros((4, 4, 4), np.float32))


def test_jpeg_composites_over_the_background():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :32] = (255, 0, 0, 255)  # opaque red left half
    rgba[:, 32:] = (0, 0, 255, 0)  # transparent right half: its colour must not show
    rgb = simplejpeg.decode_jpeg(encode.jpeg(rgba, (0, 255, 0)))
    assert np.abs(rgb[8:56, 4:28].astype(int) - (255, 0, 0)).max() < 12
    assert np.abs(rgb[8:56, 36:60].astype(int) - (0, 255, 0)).max() < 12


def test_jpeg_blends_half_transparent_pixels_like_straight_alpha(character_rgba):
    bg = (30, 200, 90)
    a = character_rgba[..., 3:4].astype(np.float64) / 255
    expected = character_rgba[..., :3] * a + np.array(bg) * (1 - a)
    rgb = simplejpeg.decode_jpeg(encode.jpeg(character_rgba, bg)).astype(np.float64)
    assert np.abs(rgb - expected).mean() < 2.0  # JPEG's own loss only
