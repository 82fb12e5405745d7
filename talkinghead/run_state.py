"""Whether an avatar renders: not after `unload` (until the next `load`), nor once nobody has watched for
`idle_after` seconds (until a viewer comes). The animation is a function of the wall clock, so it picks up
where it would be.

`apply(running)`, given at construction, starts or pauses the renderer and the workers. It is called under the
lock, so that the renderer follows the changes in the order they were made. Threads: HTTP threads (load, unload,
viewers coming and going) and the idle timer's; the lock guards everything here.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class RunState:
    def __init__(self, apply: Callable[[bool], None], viewers: Callable[[], int], idle_after: float | None = None):
        """viewers(): how many watch now. idle_after: seconds without a viewer before rendering stops (None:
        never)."""
        self.idle_after = idle_after
        self._apply = apply
        self._viewers = viewers
        self._lock = threading.Lock()
        self._unloaded = False  # the client said `unload` (until the next `load`)
        self._idle = False  # nobody watched for idle_after seconds (until a viewer comes)
        self._closed = False
        self._timer: threading.Timer | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return "paused" if self._unloaded else "idle" if self._idle else "running"

    def resume(self) -> None:
        """Render (a new character, or start-up; also after unload): also with nobody watching, for idle_after
        seconds, so the frame slot holds this character's frames when the first viewer comes."""
        with self._lock:
            self._unloaded = False
            self._idle = False
            if self._viewers() == 0:
                self._arm_timer()
            self._changed()

    def unload(self) -> None:
        with self._lock:
            self._unloaded = True
            self._changed()

    def viewers_changed(self, count: int) -> None:
        with self._lock:
            if count > 0:
                self._cancel_timer()
                if self._idle:
                    self._idle = False
                    log.info("a viewer came: rendering resumed")
            else:
                self._arm_timer()
            self._changed()

    def close(self) -> None:
        """Nothing starts the renderer again."""
        with self._lock:
            self._closed = True
            self._cancel_timer()

    def _changed(self) -> None:
        if not self._closed:
            self._apply(not (self._unloaded or self._idle))

    def _arm_timer(self) -> None:
        self._cancel_timer()
        if self.idle_after is not None and not self._closed:
            timer = threading.Timer(self.idle_after, lambda: self._timed_out(timer))
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, timer: threading.Timer) -> None:
        with self._lock:
            if timer is self._timer and self._viewers() == 0:  # not cancelled or re-armed meanwhile
                self._idle = True
                self._timer = None
                log.info("no viewer for %g s: rendering stopped until one comes", self.idle_after)
                self._changed()
