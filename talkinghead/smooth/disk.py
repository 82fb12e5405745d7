"""Keyframes kept on disk per character, so that a restart, or a reload of a character seen before, starts
with the keyframes it had: its resting poses and emotions show exactly at once, and no core is spent making
them again.

Layout: `DIR/<character>/<number>.npz`, one file per keyframe, where <character> is a hash of the image's
pixels and the model (variant and backend) that rendered it. Each file holds the pose, the editor's outputs
in half precision (the sampling map as its offset from each pixel's own position: within 0.02 px) packed in
the character's region (region.py), compressed (2.7 MB instead of 5 for the whole frame: 0.14 s to write on
the keyframe worker after a ~0.4 s render, 22 ms to read), and a header naming its format, character, model
and region; a file whose header or arrays do not match is refused, one
log line for all of a character's bad files, and removed (a crash mid-write leaves only a temporary file,
also removed). A character keeps at most `max_bytes_per_character` (the least recently used keyframes go
first), and all characters together at most `max_bytes` (the least recently used characters go first).

Threads: `save` is called by the keyframe worker, `load` by the source's loader thread, never at the same
time for one character in practice; each file is written to a temporary name and renamed, so a reader never
sees half a file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from talkinghead import pose as P
from talkinghead.smooth.region import Region

log = logging.getLogger(__name__)

FORMAT = "talkinghead-keyframe/2"  # 2: packed in a region
DEFAULT_MAX_BYTES_PER_CHARACTER = 200 * 2 ** 20
DEFAULT_MAX_BYTES = 1024 * 2 ** 20
SIZE = 512  # the editor's output is 512 x 512
# What reading a file that is not a whole keyframe of ours raises (cut short, damaged, another format).
BAD_FILE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def character_key(rgba: np.ndarray, model: str) -> str:
    """The folder name of a character's keyframes: its pixels and the model that renders them."""
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}|{model}|{rgba.shape}|{rgba.dtype}|".encode())
    digest.update(np.ascontiguousarray(rgba).tobytes())
    return digest.hexdigest()[:32]


class KeyframeDisk:
    def __init__(self, directory: Path | str, model: str, *,
                 max_bytes_per_character: int = DEFAULT_MAX_BYTES_PER_CHARACTER,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.directory = Path(directory)
        self.model = model
        self.max_bytes_per_character = max_bytes_per_character
        self.max_bytes = max_bytes
        self.refused = 0  # files refused since start (corrupt, foreign)

    def key(self, rgba: np.ndarray) -> str:
        return character_key(rgba, self.model)

    # -- writing ------------------------------------------------------------------------------------------
    def save(self, character: str, number: int, pose: np.ndarray, outputs, region: Region | None = None
             ) -> Path | None:
        """Keep one keyframe of this character (outputs: a Keyframe's offset, colour change and alpha, half
        precision, packed in `region`: None, the whole frame); then trim to the budgets. Returns its file
        (None: not written). A disk that cannot be written only costs the warm start: logged, not raised."""
        offset, color, alpha = outputs
        folder = self.directory / character
        header = json.dumps({"format": FORMAT, "character": character, "model": self.model,
                             "region": None if region is None else [list(band) for band in region.bands]})
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{number}.{os.getpid()}.tmp"
            with open(temporary, "wb") as f:
                np.savez_compressed(f, header=np.array(header), pose=np.asarray(pose, np.float32),
                         offset=offset.astype(np.float16), color=color.astype(np.float16),
                         alpha=alpha.astype(np.float16))
            path = folder / f"{number}-{time.time_ns()}.npz"
            os.replace(temporary, path)
            os.utime(folder)
            self._trim(folder)
            return path
        except OSError as e:
            log.warning("could not keep a keyframe on disk in %s: %s", folder, e)
            return None

    def _trim(self, folder: Path) -> None:
        files = sorted(folder.glob("*.npz"), key=_mtime)
        total = sum(_size(f) for f in files)
        while files and total > self.max_bytes_per_character:
            total -= _size(files[0])
            files.pop(0).unlink(missing_ok=True)
        characters = sorted((d for d in self.directory.iterdir() if d.is_dir()), key=_mtime)
        sizes = {d: sum(_size(f) for f in d.glob("*.npz")) for d in characters}
        total = sum(sizes.values())
        for d in characters:
            if total <= self.max_bytes or d == folder:
                break
            total -= sizes[d]
            shutil.rmtree(d, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------------------------
    def load(self, character: str) -> Iterator[tuple[np.ndarray, tuple]]:
        """The character's keyframes as (pose, (offset, colour change, alpha, region)): a Keyframe's arrays,
        half precision, and their region (None: the whole frame), the most recently made first. Refused files
        are removed, with one log line."""
        folder = self.directory / character
        if not folder.is_dir():
            return
        for stray in folder.glob(".*.tmp"):  # a write cut short
            stray.unlink(missing_ok=True)
        os.utime(folder)
        refused: list[str] = []
        for path in sorted(folder.glob("*.npz"), key=_mtime, reverse=True):
            try:
                keyframe = self._read(path, character)
            except BAD_FILE as e:
                refused.append(f"{path.name} ({_short(e)})")
                path.unlink(missing_ok=True)
                continue
            os.utime(path)
            yield keyframe
        if refused:
            self.refused += len(refused)
            log.warning("ignored %d keyframe file(s) of character %s: corrupt or written for another image or "
                        "model; removed: %s", len(refused), character, ", ".join(refused[:3]))

    def poses(self, character: str) -> list[tuple[Path, np.ndarray]]:
        """The character's keyframe files and their poses (only the pose is read; a bad file is refused
        when it is read whole)."""
        found = []
        for path in (self.directory / character).glob("*.npz"):
            try:
                with np.load(path, allow_pickle=False) as data:
                    pose = data["pose"]
            except BAD_FILE:
                continue
            if pose.shape == (P.NUM_PARAMS,):
                found.append((path, pose.astype(np.float32)))
        return found

    def read(self, character: str, path: Path):
        """One keyframe back, as load() gives them, or None (gone, or refused and removed with a log line)."""
        try:
            keyframe = self._read(path, character)
        except FileNotFoundError:
            return None
        except BAD_FILE as e:
            self.refused += 1
            path.unlink(missing_ok=True)
            log.warning("ignored keyframe file %s of character %s: %s; removed", path.name, character, _short(e))
            return None
        os.utime(path)
        return keyframe

    def _read(self, path: Path, character: str):
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            expected = {"format": FORMAT, "character": character, "model": self.model}
            if {k: header.get(k) for k in expected} != expected:
                raise ValueError(f"written for {header.get('model')!r} / {header.get('character')!r}")
            region = _region(header.get("region"))
            pose, offset, color, alpha = (data[k] for k in ("pose", "offset", "color", "alpha"))
        rows = SIZE if region is None else region.rows
        shapes = {"pose": (pose.shape, (P.NUM_PARAMS,)), "offset": (offset.shape, (rows, SIZE, 2)),
                  "color": (color.shape, (rows, SIZE, 4)), "alpha": (alpha.shape, (rows, SIZE, 4))}
        for name, (shape, want) in shapes.items():
            if shape != want:
                raise ValueError(f"{name} has shape {shape}, not {want}")
        arrays = (pose, offset, color, alpha)
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("values that are not finite")
        return pose.astype(np.float32), (offset.astype(np.float16), color.astype(np.float16),
                                         alpha.astype(np.float16), region)


def _region(bands) -> Region | None:
    if bands is None:
        return None
    if not isinstance(bands, list) or not all(isinstance(b, list) and len(b) == 4 for b in bands):
        raise ValueError("a region that is not a list of bands")
    region = Region(tuple(tuple(band) for band in bands))
    region.check()
    return region


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _short(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= 80 else text[:77] + "..."
