"""The one render thread and the latest-frame slot every viewer reads.

One producer: the render thread asks the animator for the pose at the current wall-clock time, renders it
and publishes it. Consumers (stream viewers) only read the latest frame; its encodings (PNG, JPEG over a
background colour) are made once per frame by the consumer that asks first, on its own thread (the stream's
broadcast thread, talkinghead.stream.Broadcast, or a viewer's): the render thread keeps its time for the
frames (on 2 cores a PNG encode is a quarter of a 25 FPS frame's budget), and nothing is encoded while nobody
watches.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from talkinghead import encode

log = logging.getLogger(__name__)


@dataclass
class Frame:
    seq: int
    rgba: np.ndarray
    t: float  # animation time the frame shows
    meta: dict = field(default_factory=dict)  # what the frame source says of it: pose, how it was made
    encoded: dict = field(default_factory=dict)  # "png" / ("jpeg", bg) -> bytes, filled lazily

    @property
    def png(self) -> bytes:
        return self.encoded_as("png", lambda: encode.png(self.rgba))

    def jpeg(self, background: tuple[int, int, int]) -> bytes:
        return self.encoded_as(("jpeg", background), lambda: encode.jpeg(self.rgba, background))

    def encoded_as(self, key, encoder: Callable[[], bytes]) -> bytes:
        """The frame in one encoding, made by the first viewer that asks (on its thread) and kept for the
        others. Two viewers asking at once may both encode it; one result is kept (dict.setdefault is
        atomic)."""
        data = self.encoded.get(key)
        return data if data is not None else self.encoded.setdefault(key, encoder())


class FrameSlot:
    """A lock and the latest frame; readers can wait for a newer one. Once closed (the avatar is gone),
    readers get None."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, rgba: np.ndarray, t: float, meta: dict | None = None) -> None:
        with self._cond:
            seq = self._frame.seq + 1 if self._frame else 1
            self._frame = Frame(seq, rgba, t, meta or {})
            self._cond.notify_all()

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The latest frame, waiting up to `timeout` s for the first one."""
        with self._cond:
            if self._frame is None and timeout:
                self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            return None if self._closed else self._frame

    def wait_newer(self, seq: int, timeout: float) -> Frame | None:
        """A frame newer than `seq`, or the latest one after `timeout` s."""
        with self._cond:
            self._cond.wait_for(lambda: (self._frame is not None and self._frame.seq > seq) or self._closed, timeout)
            return None if self._closed else self._frame


class Renderer:
    """Runs `render(t) -> (rgba, meta)` on its own thread, no faster than `fps()`, and publishes to `slot`."""

    def __init__(self, render: Callable[[float], tuple[np.ndarray, dict]], fps: Callable[[], float],
                 clock: Callable[[], float] = time.monotonic):
        self.slot = FrameSlot()
        self._render = render
        self._fps = fps
        self._clock = clock
        self._running = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._times: collections.deque[float] = collections.deque(maxlen=512)
        self.frames_rendered = 0
        self.failed_frames = 0
        self.last_error: str | None = None
        self._failing = 0  # failed frames in a row
        self._logged_error: str | None = None  # the failure logged with its traceback, while it repeats

    # -- control -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._running.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="talkinghead-render", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        self._running.clear()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def close(self) -> None:
        """Stop the thread; readers of the slot get None from now on (their streams end)."""
        self._closed.set()
        self._running.set()  # wake the thread so it can see it is closed
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.slot.close()

    def render_now(self) -> None:
        """Render and publish one frame on the calling thread (the first frame at start-up)."""
        self._render_one()

    # -- stats -------------------------------------------------------------------------------------------
    def fps_last(self, seconds: float = 5.0) -> float:
        now = self._clock()
        recent = [t for t in list(self._times) if now - t <= seconds]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    # -- the thread --------------------------------------------------------------------------------------
    def _loop(self) -> None:
        """Frames show the poses of the frame grid (multiples of 1/fps), not of whenever the thread woke: the
        smooth source prepares faces for exactly those times, and a late frame still shows a true instant."""
        last: float | None = None
        while not self._closed.is_set():
            if not self._running.is_set():
                self._running.wait()
                last = None
                continue
            due = self._next_due(last, 1.0 / max(self._fps(), 1e-3))
            delay = due - self._clock()
            if delay > 0 and self._closed.wait(delay):
                break
            try:
                self._render_one(due)
            except Exception as e:  # keep the last good frame on the wire; say what broke, go on
                self._failed(e)
            else:
                self._recovered()
            last = due

    def _failed(self, e: Exception) -> None:
        """Log a failure with its traceback once, not every frame: the same error again is only counted
        until a frame renders (then one line says so)."""
        error = f"{type(e).__name__}: {e}"
        self.failed_frames += 1
        self._failing += 1
        if error != self._logged_error:
            log.exception("rendering a frame failed; going on with the next frame (logged once while it repeats)")
            self._logged_error = error
        self.last_error = error

    def _recovered(self) -> None:
        if self._failing:
            log.info("rendering works again after %d failed frame%s", self._failing, "s" * (self._failing > 1))
            self._failing, self._logged_error = 0, None

    def _next_due(self, last: float | None, step: float) -> float:
        """The latest grid time not after now when it is newer than the last frame (on time, or behind: then
        the frames in between are skipped, never rendered as history), else the next one."""
        latest = math.floor(self._clock() / step + 1e-6) * step
        if last is None or latest > last + step / 2:
            return latest
        return (round(last / step) + 1) * step

    def _render_one(self, t: float | None = None) -> None:
        t = self._clock() if t is None else t
        rgba, meta = self._render(t)
        self.slot.publish(rgba, t, meta)
        self.frames_rendered += 1
        self._times.append(self._clock())
