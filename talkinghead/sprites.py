"""Static expression sprites: one exact render per emotion, packed in a zip as SillyTavern names them.

SillyTavern's Character Expressions shows `<emotion>.png` for the classified emotion (and can upload such a
set as a zip), so users whose machine is too slow for the live avatar still get the character's own faces.

The zip is streamed: each entry goes out as soon as its render is done (28 exact renders take 10-40 s on a
CPU), so a client sees the progress by the entries arriving and nothing is held but the current PNG.
Entries are stored, not deflated: PNG data is already compressed.
"""
from __future__ import annotations

import io
import zipfile
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

FILE_NAME = "sprites.zip"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # same renders, same zip bytes


def sprite_name(emotion: str) -> str:
    return f"{emotion}.png"


def stream_zip(templates: Mapping[str, np.ndarray], render_png: Callable[[np.ndarray], bytes],
               order: Iterable[str] | None = None) -> Iterator[bytes]:
    """Yield the zip's bytes: after each emotion's PNG its entry, at the end the zip's directory."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for emotion in (order if order is not None else sorted(templates)):
            png = render_png(templates[emotion])
            archive.writestr(zipfile.ZipInfo(sprite_name(emotion), date_time=_FIXED_TIME), png)
            yield sink.take()
    yield sink.take()  # the central directory, written on close


class _Sink(io.RawIOBase):
    """A write-only, unseekable file that hands out what was written (zipfile then writes entries with a
    trailing data descriptor instead of seeking back to fix up their headers)."""

    def __init__(self):
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out
