"""The user's own emotion templates (saved from the manual poser), kept across restarts as one JSON file.

The file is `{emotion: {morph: value}}` for the emotions the user saved (non-zero morphs only), the same shape
as SillyTavern's per-character `_emotions.json`. The built-in templates stay untouched in
`talkinghead/emotions/`; the user's replace them in the server's template set.

A save never leaves a half-written file: the new content goes to a temporary file in the same folder, is
flushed to the disk (fsync) and then renamed over the old one (os.replace is atomic on POSIX and Windows), so
a crash or a full disk mid-write leaves the previous file as it was.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from talkinghead import emotions, pose as pose_mod

log = logging.getLogger(__name__)
FILE_NAME = "emotions.json"


class TemplateStore:
    """Saved templates in `<folder>/emotions.json`; folder None keeps them in memory only (for tests and
    embedders that give no data folder)."""

    def __init__(self, folder: str | os.PathLike | None):
        self.path = Path(folder) / FILE_NAME if folder is not None else None
        self._lock = threading.Lock()  # one writer at a time: each save rewrites the whole file
        self._saved: dict[str, np.ndarray] = {}

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def load(self) -> dict[str, np.ndarray]:
        """Read the file (none yet: nothing saved). A damaged file is moved aside, not overwritten later."""
        with self._lock:
            self._saved = self._read()
            return dict(self._saved)

    def saved(self) -> dict[str, np.ndarray]:
        with self._lock:
            return dict(self._saved)

    def save(self, emotion: str, values: np.ndarray) -> None:
        """Keep `values` as the template of `emotion`. Raises OSError (the previous file is kept)."""
        with self._lock:
            updated = {**self._saved, emotion: np.array(values, dtype=np.float32)}
            self._write(updated)
            self._saved = updated

    def remove(self, emotion: str) -> None:
        """Forget the saved template of `emotion` (the built-in one applies again). Raises OSError."""
        with self._lock:
            if emotion not in self._saved:
                return
            updated = {k: v for k, v in self._saved.items() if k != emotion}
            self._write(updated)
            self._saved = updated

    # -- the file ----------------------------------------------------------------------------------------
    def _read(self) -> dict[str, np.ndarray]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            obj = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(obj, dict):
                raise emotions.TemplateError("the file is not a JSON object {emotion: {morph: value}}")
            return {name: emotions.template_from_json(name, morphs) for name, morphs in obj.items()}
        except (ValueError, emotions.TemplateError) as e:  # json.JSONDecodeError is a ValueError
            aside = self.path.with_name(f"{FILE_NAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self.path, aside)
            log.error("saved emotion templates in %s are unreadable (%s); moved to %s, using the built-in "
                      "templates", self.path, e, aside.name)
            return {}

    def _write(self, templates: dict[str, np.ndarray]) -> None:
        if self.path is None:
            return
        text = json.dumps({name: pose_mod.to_dict(values, skip_zeros=True)
                           for name, values in sorted(templates.items())}, indent=2) + "\n"
        atomic_write(self.path, text.encode("utf-8"))


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once: the old content stays until the new one is on the disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # the rename itself must reach the disk too


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable without it
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
