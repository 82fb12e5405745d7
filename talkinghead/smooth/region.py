"""Where a character's frames can show anything: the part of the 512×512 frame a keyframe keeps, and the only
part a frame is blended and composed in. Everywhere else the frame is transparent (all bytes 0).

A character fills about half of its picture (lambda_00: 29 % of the pixels, 48 % of their bounding box), and
the networks move it only a little: measured on lambda_00's exact renders at each rotation value's ends (±1,
and all six at once), every pixel that is not transparent lies within one 32-pixel tile of a tile the image
covers, except a handful of pixels of one or two levels at the far ends of a turn (at most 6, one level:
`body_z` +1, `head_y` +1; 3 pixels of up to 3 levels with all six at +1). So a Region is the image's tiles,
one tile around them and the face box (whose face changes), taken as one span of columns per row of tiles: 142
of the 256 tiles for lambda_00 (55 %). A keyframe keeps its outputs there only (2.7 MB instead of 5: 43
keyframes in memory instead of 24) and a frame costs that much less to blend and compose.

Arrays of a region are *packed*: its bands' pixels one after the other, row by row, shaped (rows, 512, C) (a
band is 32 rows high and a multiple of 32 columns wide, so its pixels fill whole rows of 512). OpenCV and numpy
work on them as on an image: the warp's map gives the pixels' own coordinates in the whole frame. A region
that covers the whole frame packs nothing: its packed array is the frame.

Threads: a Region is immutable; its pixel grid is computed once per region (functools.cache).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from talkinghead.smooth.faces import FACE_BOX

SIZE = 512
TILE = 32  # small enough to follow the silhouette, large enough that a frame is a few dozen OpenCV calls

Band = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1


@dataclass(frozen=True)
class Region:
    bands: tuple[Band, ...]

    @classmethod
    def of(cls, rgba: np.ndarray) -> Region:
        """The region of a character image (uint8 512×512×4, straight alpha): the tiles its alpha covers,
        one tile around them, and the face box."""
        tiles = SIZE // TILE
        covered = (rgba[..., 3] > 0).reshape(tiles, TILE, tiles, TILE).any(axis=(1, 3))
        covered = cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        covered[FACE_BOX[0].start // TILE:FACE_BOX[0].stop // TILE,
                FACE_BOX[1].start // TILE:FACE_BOX[1].stop // TILE] = True
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

    @classmethod
    def whole(cls) -> Region:
        return cls(((0, SIZE, 0, SIZE),))

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

    def pack(self, image: np.ndarray) -> np.ndarray:
        """(512, 512, C) → (rows, 512, C): the region's pixels (the frame itself for a whole region)."""
        if self.is_whole:
            return image
        channels = image.shape[-1]
        return np.concatenate([image[y0:y1, x0:x1].reshape(-1, channels)
                               for y0, y1, x0, x1 in self.bands]).reshape(-1, SIZE, channels)

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """(rows, 512, C) → (512, 512, C), zero outside the region."""
        if self.is_whole:
            return packed
        channels = packed.shape[-1]
        flat = packed.reshape(-1, channels)
        image = np.zeros((SIZE, SIZE, channels), packed.dtype)
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


@functools.cache
def packed_grid(region: Region) -> np.ndarray:
    """Each of the region's pixels' own coordinates (x, y) in the frame, packed: where it samples with no
    warp. Read only."""
    xs, ys = np.meshgrid(np.arange(SIZE, dtype=np.float32), np.arange(SIZE, dtype=np.float32))
    grid = region.pack(np.stack([xs, ys], axis=-1)).copy()
    grid.flags.writeable = False
    return grid
