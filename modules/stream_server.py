"""Viewers off the request threads: waitress hands each result_feed socket to one writer thread.

Why: a viewer watches for hours; had it kept one of waitress's request threads, the pool would have run out
after a few dozen viewers and the API stopped answering. Now the request thread runs the app as for any
request (API key, CORS, the viewer cap, the format), then, when the body is a `modules.viewers.StreamBody`,
writes nothing itself: it hands the connection (a duplicate of its socket, with the response's status line
and headers exactly as waitress would have written them) to the writer and is free again.

Threads and what they own:
- waitress's request threads: run the app; `HandOffTask._hand_off` (on the request's thread) builds the
  head, takes what waitress still had queued for the connection (under waitress's `outbuf_lock`) and passes
  the socket on. waitress then closes its own descriptor of the socket; the connection lives on in ours.
- `talkinghead-broadcast`, one per watched stream (talkinghead.stream.Broadcast): waits for the stream's
  frames and makes each part once per format.
- `talkinghead-viewers`, one per server while anyone watches: an asyncio loop writing to every viewer's socket
  (`_Viewer`). It alone touches `StreamWriter._streams` and the viewers; `StreamWriter._lock` guards the loop
  handle and the number of viewers, which decide when the thread starts and ends.

Delivery is that of `talkinghead.stream.frames()` served by waitress before: every frame to every viewer
that keeps up; a viewer whose unsent bytes pass OUTBUF_HIGH (waitress's `outbuf_high_watermark` of
server.py) skips frames and is sent the latest one as soon as they fall under it; the last frame again
about once a second when nothing new comes. A viewer that takes nothing for STALLED_S is closed, so a dead
client cannot keep a place under the cap.

Why not an ASGI server for streams (uvicorn + a2wsgi): everything else waitress does for us (bodies over
the limit refused unread, JSON for requests it cannot parse: modules/limits.py; timeouts; the tests that
check them byte for byte) would have had to be done again for a second server. This uses waitress's task
(pinned in requirements.txt): `build_response_header`, the channel's outbufs and socket.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time

from waitress.task import WSGITask

from modules.viewers import HAND_OFF, StreamBody
from talkinghead import stream

log = logging.getLogger(__name__)

OUTBUF_HIGH = 1 << 20  # a viewer with more unsent bytes than this skips frames (waitress's high watermark)
STALLED_S = 30.0  # a viewer that takes no byte for this long is closed (waitress's channel_timeout)


class HandOffTask(WSGITask):
    """waitress's WSGI task, but a StreamBody's connection goes to `writer` instead of being written here."""

    writer: StreamWriter  # set on the subclass serve_streams() makes for one server
    handed_off = False

    def get_environment(self):
        environ = super().get_environment()
        environ[HAND_OFF] = self._hand_off
        return environ

    def _hand_off(self, body: StreamBody) -> bool:
        channel = self.channel
        with channel.outbuf_lock:  # the loop thread sends from these buffers only under this lock
            if not channel.connected:
                return False  # gone: the body's generator meets that at once
            head = self.build_response_header()  # the status line and headers waitress would send, as it would
            queued = b"".join(buf.get(len(buf), skip=True) for buf in channel.outbufs)  # an earlier answer's rest
            channel.total_outbufs_len = 0
            sock = channel.socket.dup()
        self.wrote_header = self.handed_off = True
        self.close_on_finish = True  # waitress closes its descriptor; the connection lives on in `sock`
        self.writer.add(sock, queued + head, self.chunked_response, body)
        return True

    def finish(self):
        if not self.handed_off:  # else the writer ends the response
            super().finish()


def serve_streams(server) -> StreamWriter:
    """Make the waitress `server` hand result_feed sockets to a writer thread; returns the writer."""
    writer = StreamWriter()
    task = type("HandOffTask", (HandOffTask,), {"writer": writer})
    server.channel_class = type("StreamChannel", (server.channel_class,), {"task_class": task})
    return writer


class StreamWriter:
    """Writes every handed-off viewer's stream from one asyncio loop thread, started by the first viewer and
    ended when the last one leaves."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.count = 0  # viewers handed over and not yet gone
        self._streams: dict[int, _Stream] = {}  # id(source) → its broadcast and viewers (loop thread only)

    # -- any thread ----------------------------------------------------------------------------------------
    def add(self, sock, preamble: bytes, chunked: bool, body: StreamBody) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run, args=(self._loop,), name="talkinghead-viewers",
                                                daemon=True)
                self._thread.start()
            self.count += 1
            loop = self._loop
        asyncio.run_coroutine_threadsafe(self._connect(sock, _Viewer(self, preamble, chunked, body)), loop)

    def close(self, timeout: float = 5.0) -> None:
        """End every stream (server shutdown)."""
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is not None:
            loop.call_soon_threadsafe(self._close_all)
            thread.join(timeout)

    def _post(self, to: _Stream, seq: int, parts: dict, keepalive: bool) -> None:
        """A Broadcast's delivery, from its thread: to the loop."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._deliver, to, seq, parts, keepalive)
            except RuntimeError:  # that loop has just ended (its last viewer left): `to` has no viewers
                pass

    # -- the loop thread -----------------------------------------------------------------------------------
    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _connect(self, sock, viewer: _Viewer) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: viewer, sock)
        except OSError as e:  # gone already
            log.info("a viewer left before its stream started: %s", e)
            sock.close()
            self._left(viewer)

    def _joined(self, viewer: _Viewer) -> None:
        source = viewer.body.source  # kept alive by its _Stream while that is listed: its id stays its own
        if id(source) not in self._streams:
            self._streams[id(source)] = _Stream(source, self._post)
        to = self._streams[id(source)]
        frame = source.slot.latest()  # before joining: a viewer may resume rendering, this frame is the last one
        to.viewers.add(viewer)
        to.broadcast.join(viewer.background)
        if frame is not None:  # the latest frame at once, as frames() starts
            viewer.offer(frame.seq, _Part(stream.part(frame, viewer.background)))

    def _deliver(self, to: _Stream, seq: int | None, parts: dict, keepalive: bool) -> None:
        if seq is None:  # the source is gone (a deleted avatar): its viewers' responses end
            for viewer in list(to.viewers):
                viewer.finish()
            return
        wrapped = {background: _Part(data) for background, data in parts.items()}
        for viewer in list(to.viewers):  # none when the stream was retired meanwhile
            if viewer.background in wrapped:
                viewer.offer(seq, wrapped[viewer.background], keepalive)

    def _left(self, viewer: _Viewer) -> None:
        to = self._streams.get(id(viewer.body.source))
        if to is not None and viewer in to.viewers:
            to.viewers.discard(viewer)
            to.broadcast.leave(viewer.background)
            if not to.viewers:
                del self._streams[id(viewer.body.source)]  # its broadcast thread ends by itself
        viewer.body.end()
        with self._lock:
            self.count -= 1
            if self.count == 0:  # the thread ends; the next viewer starts a new one
                loop, self._loop, self._thread = self._loop, None, None
                loop.stop()

    def _close_all(self) -> None:
        for to in list(self._streams.values()):
            for viewer in list(to.viewers):
                viewer.transport.abort()


class _Stream:
    """One source's viewers and the Broadcast thread that makes its parts."""

    def __init__(self, source, post):
        self.source = source
        self.viewers: set[_Viewer] = set()
        self.broadcast = stream.Broadcast(source.slot, source.viewers, functools.partial(post, self))


class _Part:
    """A part as sent: the bytes, and (made once, for every viewer whose response is chunked) in a chunk."""

    def __init__(self, data: bytes):
        self.data = data

    @functools.cached_property
    def chunk(self) -> bytes:
        return _chunk(self.data)


def _chunk(data: bytes) -> bytes:
    return b"%X\r\n%b\r\n" % (len(data), data)  # as waitress writes each chunk of a chunked body


class _Viewer(asyncio.Protocol):
    """One viewer's connection (loop thread only). Writes a frame when it has room (unsent bytes under
    OUTBUF_HIGH), else keeps only the latest one for when it has."""

    def __init__(self, writer: StreamWriter, preamble: bytes, chunked: bool, body: StreamBody):
        self._writer = writer
        self.body, self.background = body, body.background
        head = stream.first_head(body.background)
        # Before the first frame: the status line and headers (after what waitress had queued), the first head.
        self._preamble = preamble + (_chunk(head) if chunked else head)
        self._chunked = chunked
        self.transport: asyncio.Transport | None = None
        self._sent = 0  # seq of the last frame written
        self._waiting: tuple[int, _Part] | None = None  # the latest frame, while there is no room for it
        self._paused_since: float | None = None

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=OUTBUF_HIGH, low=OUTBUF_HIGH)
        try:
            self._writer._joined(self)
        except Exception:
            log.exception("a viewer's stream could not start")
            transport.abort()

    def connection_lost(self, exc):
        self._writer._left(self)

    def offer(self, seq: int, part: _Part, keepalive: bool = False) -> None:
        if seq < self._sent or (seq == self._sent and not keepalive) or self.transport.is_closing():
            return
        if self._paused_since is not None:
            self._waiting = (seq, part)
            if time.monotonic() - self._paused_since > STALLED_S:
                log.info("a viewer took nothing for %.0f s: closing its stream", STALLED_S)
                self.transport.abort()
            return
        if self._preamble:
            self.transport.write(self._preamble)
            self._preamble = b""
        self.transport.write(part.chunk if self._chunked else part.data)
        self._sent = seq

    def finish(self) -> None:
        """End the response (its source is gone) and close the connection once what is queued is sent."""
        if self.transport.is_closing():
            return
        if self._preamble:
            self.transport.write(self._preamble)
            self._preamble = b""
        if self._chunked:
            self.transport.write(b"0\r\n\r\n")  # the chunked body's end, as waitress writes it
        self.transport.close()

    def pause_writing(self):
        self._paused_since = time.monotonic()

    def resume_writing(self):
        self._paused_since = None
        if self._waiting is not None:
            (seq, part), self._waiting = self._waiting, None
            self.offer(seq, part)

    def data_received(self, data):
        pass  # a viewer has nothing more to say; anything it sends is ignored

    def eof_received(self):
        # Keep sending, as waitress did: the viewer is gone when a write fails (within two frames, or two
        # keep-alives), not when it stops sending (a client may shut its side of the connection and still read).
        return True
