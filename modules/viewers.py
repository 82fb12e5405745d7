"""result_feed's answer: the viewer cap (`--talkinghead-max-viewers`) and the stream body a server can take over.

`StreamBody` is the WSGI body of one viewer's stream. Served by server.py (waitress with
modules/stream_server.py), its socket goes to one writer thread that serves every viewer, and the request
thread is free again at once. Served by anything else (Flask's test client, another WSGI server) it is the
`talkinghead.stream.frames()` generator, iterated by the server's thread, as before. The bytes are the same.

The cap counts viewers of every stream of this app; the viewer past it gets 503 JSON before any stream
starts. A viewer's place is given back when its stream ends: on the WSGI server's `close()`, on the writer's
`end()` when a handed-off viewer left, or when the body is dropped unread. Threads: any request thread admits; whoever ends
the stream releases; `ViewerCap._lock` guards the count.
"""
from __future__ import annotations

import threading
import weakref

from modules.errors import ApiError
from talkinghead import stream

DEFAULT_MAX_VIEWERS = 60
HAND_OFF = "talkinghead.hand_off"  # environ key: a server that can take a stream's socket puts its callable here


class ViewerCap:
    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self.count = 0

    def admit(self) -> None:
        with self._lock:
            if self.count >= self.limit:
                raise ApiError(503, f"503: this server already streams to {self.limit} viewers, its limit "
                                    f"(--talkinghead-max-viewers {self.limit}); try again when one has left")
            self.count += 1

    def release(self) -> None:
        with self._lock:
            self.count -= 1


class StreamBody:
    """One viewer's result_feed body over `source` (anything with a FrameSlot `slot` and stream.Viewers
    `viewers`: the engine, or one avatar): PNG parts, or JPEG over `background`. Holds a place under `cap`
    from its making (ApiError 503 when there is none) until the stream ends."""

    def __init__(self, source, background: tuple[int, int, int] | None, cap: ViewerCap, environ: dict):
        cap.admit()
        self.source, self.background = source, background
        self._release = weakref.finalize(self, cap.release)  # once: on close(), or when dropped unread
        self._hand_off = environ.get(HAND_OFF)
        self._handed_off = False
        self._frames = None

    def __iter__(self):
        if self._hand_off is not None and self._hand_off(self):
            self._handed_off = True  # the writer sends the frames and calls end() when the viewer leaves
            return iter(())
        self._frames = stream.frames(self.source.slot, self.source.viewers, background=self.background)
        return self._frames

    def close(self) -> None:
        """The WSGI server is done with the body: the stream ends, unless its socket was handed off."""
        if not self._handed_off:
            self.end()

    def end(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._release()
