"""The `multipart/x-mixed-replace; boundary=frame` stream: every new frame once, as soon as it is published.

Framing: right after a frame's bytes the stream writes the *next* part's boundary and headers. A browser shows
part N of such a stream only once part N+1's boundary and headers have arrived (tried in Chromium: with the
boundary written before each frame instead, every frame showed one frame late, and the first not at all until
the second came). So a part's headers go out before its frame exists, and parts carry no Content-Length:
the boundary delimits them, as multipart allows. Readers: browsers' `<img>`, ffmpeg/OpenCV (mpjpeg), and
`PartReader` below.

Delivery: each viewer waits on the latest-frame slot and is sent each frame it has not had yet; a viewer too
slow for every frame gets the latest one when it is ready again (frames are skipped, never queued), and
never holds up the renderer or another viewer. When no new frame comes (paused, or a still character) the
last one is re-sent about once a second, a keep-alive for proxies and for viewers that connect to a
paused stream.

Two ways to serve the same bytes: `frames()` is a generator a server thread iterates per viewer (any WSGI
server, Flask's test client); `Broadcast` serves all of one stream's viewers from one thread, for a writer that
holds their sockets (modules/stream_server.py: how server.py serves result_feed, so viewers hold no request
thread).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, Iterator

from talkinghead.renderer import FrameSlot

log = logging.getLogger(__name__)

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
FIRST_FRAME_TIMEOUT = 60.0  # the first frame after start-up can take a while on a slow CPU
KEEPALIVE_S = 1.0  # with no new frame, the last one is sent again this often


def part_head(content_type: str) -> bytes:
    """A part's boundary and headers (the frame's bytes follow, then "\\r\\n" and the next part's head)."""
    return f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode("ascii")


class Viewers:
    """Counts open streams (for stats, and so the engine can stop rendering when nobody watches); calls
    `on_change(count)` after each change, outside its lock."""

    def __init__(self, on_change: Callable[[int], None] | None = None):
        self._lock = threading.Lock()
        self.count = 0
        self.on_change = on_change

    def __enter__(self):
        self.change(+1)

    def __exit__(self, *exc):
        self.change(-1)

    def change(self, delta: int) -> None:
        with self._lock:
            self.count += delta
            count = self.count
        if self.on_change is not None:
            self.on_change(count)


def frames(slot: FrameSlot, viewers: Viewers, *, background: tuple[int, int, int] | None = None,
           keepalive: float = KEEPALIVE_S) -> Iterator[bytes]:
    """The stream's bytes: PNG parts, or JPEG over `background` when it is given. Ends when the client goes
    away (the server closes this generator)."""
    head = first_head(background)
    with viewers:
        frame = slot.latest(timeout=FIRST_FRAME_TIMEOUT)
        if frame is None:
            log.warning("no frame rendered within %.0f s; closing the stream", FIRST_FRAME_TIMEOUT)
            return
        yield head
        while frame is not None:  # None: the avatar is gone (its slot closed)
            yield part(frame, background)
            frame = slot.wait_newer(frame.seq, timeout=keepalive)  # the same frame again on a time-out


def _part(frame, background: tuple[int, int, int] | None, head: bytes) -> bytes:
    """A frame's bytes on the wire: its encoding and the next part's head, made once for all its viewers."""
    data = frame.png if background is None else frame.jpeg(background)
    return b"".join((data, b"\r\n", head))


def first_head(background: tuple[int, int, int] | None) -> bytes:
    """What a stream starts with: the first part's head (`frames()` yields it before the first frame)."""
    return part_head("image/png" if background is None else "image/jpeg")


def part(frame, background: tuple[int, int, int] | None) -> bytes:
    """A frame's part as `frames()` yields it (its encoding, then the next part's head), cached on the frame."""
    head = first_head(background)
    return frame.encoded_as(("part", background), lambda: _part(frame, background, head))


class Broadcast:
    """One stream's viewers served from one thread (`talkinghead-broadcast`), the same bytes as `frames()`.

    The thread waits for each new frame (or, after `keepalive` s without one, takes the last one again), makes
    its part once for each format its viewers asked for, and calls `deliver(seq, parts, keepalive)` with
    parts {background or None (PNG): bytes}; `deliver` hands them on (it must not block: a writer thread sends
    them); `deliver(None, {}, False)` when the slot is closed (the source is gone): the streams end. `join(background)` / `leave(background)` count viewers, in `viewers` too (for stats and the idle
    stop, as a viewer of `frames()` is counted); the thread runs while anyone has joined and ends within
    `keepalive` s of the last leaving. Threads: the caller's for join/leave, this one's for deliver; `_lock`
    guards the formats asked for and the thread handle.
    """

    def __init__(self, slot: FrameSlot, viewers: Viewers,
                 deliver: Callable[[int, dict, bool], None], keepalive: float = KEEPALIVE_S):
        self._slot, self._viewers, self._deliver, self._keepalive = slot, viewers, deliver, keepalive
        self._lock = threading.Lock()
        self._formats: dict[tuple[int, int, int] | None, int] = {}  # background → viewers that asked for it
        self._thread: threading.Thread | None = None

    def join(self, background: tuple[int, int, int] | None) -> None:
        self._viewers.change(+1)
        with self._lock:
            self._formats[background] = self._formats.get(background, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="talkinghead-broadcast", daemon=True)
                self._thread.start()

    def leave(self, background: tuple[int, int, int] | None) -> None:
        with self._lock:
            self._formats[background] -= 1
            if not self._formats[background]:
                del self._formats[background]
        self._viewers.change(-1)

    def _run(self) -> None:
        seq = 0
        while True:
            frame = self._slot.wait_newer(seq, timeout=self._keepalive)
            with self._lock:
                if not self._formats:  # the last viewer left: a later join starts a new thread
                    self._thread = None
                    return
                formats = list(self._formats)
            if frame is None:
                if self._slot.closed:  # the source is gone (a deleted avatar): its viewers' streams end
                    with self._lock:
                        self._thread = None
                    self._deliver(None, {}, False)
                    return
                continue  # no first frame yet
            parts = {background: part(frame, background) for background in formats}
            self._deliver(frame.seq, parts, frame.seq == seq)
            seq = frame.seq


class PartReader:
    """Splits a result_feed body (an iterable of byte chunks) into parts: `read(n)` gives the next n as
    [(headers, payload)], fewer if the body ends. A part is complete when the next part's boundary has come,
    which the server sends right after each frame."""

    _DELIMITER = f"\r\n--{BOUNDARY}\r\n".encode("ascii")
    _FIRST = f"--{BOUNDARY}\r\n".encode("ascii")

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buf = b""
        self._started = False

    def read(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        parts = []
        while len(parts) < count:
            part = self._next_part()
            if part is None:
                break
            parts.append(part)
        return parts

    def _next_part(self) -> tuple[dict[str, str], bytes] | None:
        while True:
            if not self._started and len(self._buf) >= len(self._FIRST):
                if not self._buf.startswith(self._FIRST):
                    raise ValueError(f"not a result_feed stream: starts with {self._buf[:40]!r}")
                self._buf, self._started = self._buf[len(self._FIRST):], True
            head_end = self._buf.find(b"\r\n\r\n") if self._started else -1
            end = self._buf.find(self._DELIMITER, head_end + 4) if head_end >= 0 else -1
            if end >= 0:
                headers = dict(line.split(": ", 1) for line in self._buf[:head_end].decode("ascii").split("\r\n"))
                payload = self._buf[head_end + 4:end]
                self._buf = self._buf[end + len(self._DELIMITER):]
                return headers, payload
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._buf += chunk
