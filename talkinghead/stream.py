"""The `multipart/x-mixed-replace; boundary=frame` stream: the latest frame, paced at target_fps."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator

from talkinghead.renderer import FrameSlot

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
FIRST_FRAME_TIMEOUT = 60.0  # the first frame after start-up can take a while on a slow CPU


def part(data: bytes, content_type: str) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode("ascii") + data + b"\r\n"


class Viewers:
    """Counts open streams (for stats), so a viewer that leaves is seen to leave."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0

    def __enter__(self):
        with self._lock:
            self.count += 1

    def __exit__(self, *exc):
        with self._lock:
            self.count -= 1


def frames(slot: FrameSlot, viewers: Viewers, fps: Callable[[], float], *,
           background: tuple[int, int, int] | None = None) -> Iterator[bytes]:
    """Yield one multipart part per tick: PNG, or JPEG over `background` when it is given.

    A new frame is sent when the renderer has one, else the last one again, so the client sees a steady
    `target_fps` stream. Ends when the client goes away (the server closes this generator).
    """
    content_type = "image/png" if background is None else "image/jpeg"
    with viewers:
        frame = slot.latest(timeout=FIRST_FRAME_TIMEOUT)
        if frame is None:
            log.warning("no frame rendered within %.0f s; closing the stream", FIRST_FRAME_TIMEOUT)
            return
        due = time.monotonic()
        while True:
            frame = slot.latest() or frame
            data = frame.png if background is None else frame.jpeg(background)
            yield part(data, content_type)
            due = max(due + 1.0 / max(fps(), 1e-3), time.monotonic() - 1.0)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
