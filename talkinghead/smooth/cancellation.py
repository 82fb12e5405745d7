"""Stopping the smooth stream's work that is no longer wanted: a keyframe or a face being made for a future
that an event replaced, or for a character that is about to be replaced.

Each worker holds one part of the poser (its talkinghead.turns.PoserLocks part) while it runs that part's
networks; an event cancels the backend runs of the parts at work for an old future, and work that waited for a
lock, or is between two networks, checks `stop_if_stale` before going on. The networks may be shared with other
avatars, but a part is recorded as at work for this avatar only while this avatar holds it, so a cancel here
never stops another avatar's run.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable

from talkinghead import backends

# What each worker's part runs: a keyframe (after its face), a face.
NETWORKS = {"body": ("two_algo_face_body_rotator", "editor"), "face": ("eyebrow_morphing_combiner", "face_morpher")}


# The future of work that serves any future (a keyframe: it is stored by its pose): only a new character stops it.
ANY = "any future"


class Cancellation:
    """Which future each part ("body", "face") is working for, and stopping it. Guarded by the lock it is
    given: the smooth source's (the workers wait on it)."""

    def __init__(self, poser, generation: Callable[[], int], lock: threading.Condition):
        self.poser = poser
        self._generation = generation
        self._lock = lock
        self._working_for: dict[str, int] = {}  # part -> the future of the work it is doing, while it does
        self.image_coming = False  # between image_coming() and image_settled(): work starts nothing

    def event(self) -> None:
        """The future changed: stop the parts at work for an old one, and wake the workers."""
        generation = self._generation()
        with self._lock:
            self._stop(part for part, future in self._working_for.items() if future not in (generation, ANY))
            self._lock.notify_all()

    def stop_for_new_image(self) -> None:
        """A new character is coming: stop all work in progress, and start none until image_settled()."""
        with self._lock:
            self.image_coming = True
            self._stop(self._working_for)

    def image_settled(self) -> None:
        """The new character is set, or was not after all: work may start again."""
        with self._lock:
            self.image_coming = False

    def _stop(self, parts) -> None:
        """Cancel the networks of these parts at work, and those they start until their block ends (sticky:
        see cancellable). Called holding the lock."""
        for part in list(parts):
            backends.cancel_runs(self.poser, NETWORKS[part], sticky=True)

    @contextlib.contextmanager
    def cancellable(self, part: str, generation: int | None):
        """While the block runs (holding `part`'s poser lock), `event()` may cancel its networks when the
        future changes: the run in progress and those after it in the block. generation None: not
        cancellable (a frame waits for this work); ANY: only a new character stops it."""
        if generation is None:
            yield
            return
        with self._lock:
            self._working_for[part] = generation
        try:
            yield
        finally:
            with self._lock:
                del self._working_for[part]
                backends.reset_cancels(self.poser, NETWORKS[part])  # the next holder of the lock may run them

    def stop_if_stale(self, generation: int | None) -> None:
        """Raise Cancelled if work for this future (None: work that must finish) is no longer wanted: an
        event came while it waited for a poser lock, or between two networks, or a new character is coming."""
        if generation is None:
            return
        if self.image_coming or (generation is not ANY and generation != self._generation()):
            raise backends.Cancelled("the future changed")
