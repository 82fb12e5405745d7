"""Turns on the networks: one set of THA3 networks serves every avatar of a server, one caller at a time per part.

The face networks (eyebrow combiner, face morpher) and the body networks (rotator, editor) are different
models, so two callers may run one part each at the same time: a face worker beside a keyframe worker, as for
one avatar alone. A whole render, or a new character, takes both parts (`with locks:`). However many avatars
there are, at most one face and one body job run at once: the cores a lone avatar's two workers used.

A part is handed out in turns (`TurnLock`): among the avatars waiting for it, round-robin; within one avatar,
first come first served. A plain threading.Lock promises no order: a worker that loops takes it back before a
waiting thread wakes, and one busy avatar could keep the networks from the others for as long as it is busy.
An avatar that nobody watches has its workers paused (the engine's run state), so it takes no turns.

Threads: any (the avatars' workers and frame threads, HTTP threads for stills and new characters). Each
TurnLock's condition guards its own queue; the two parts are taken face first, then body, never the reverse.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque


class TurnLock:
    """A lock granted in turns among its owners (any hashable: one per avatar). Not re-entrant."""

    def __init__(self):
        self._cond = threading.Condition()
        self._held = False
        # owner -> its waiting tickets, first come first; owners in the order their turns come
        self._queues: OrderedDict[object, deque[object]] = OrderedDict()

    def acquire(self, owner) -> None:
        ticket = object()
        with self._cond:
            queue = self._queues.setdefault(owner, deque())
            queue.append(ticket)
            try:
                while self._held or self._next() is not ticket:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue, or the tickets behind wait forever
                queue.remove(ticket)
                if not queue:
                    del self._queues[owner]
                self._cond.notify_all()
                raise
            queue.popleft()
            if queue:
                self._queues.move_to_end(owner)  # its next waiter comes after the other owners'
            else:
                del self._queues[owner]
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def _next(self) -> object:
        return next(iter(self._queues.values()))[0]


class Part:
    """One part's TurnLock as one owner takes it: `with part:`."""

    def __init__(self, lock: TurnLock, owner):
        self._lock = lock
        self._owner = owner

    def acquire(self) -> None:
        self._lock.acquire(self._owner)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class PoserTurns:
    """The two parts of one set of networks, shared by every avatar that runs them."""

    def __init__(self):
        self.face = TurnLock()
        self.body = TurnLock()

    def for_avatar(self, owner=None) -> "PoserLocks":
        return PoserLocks(self, owner)


class PoserLocks:
    """One avatar's hold on the shared parts: `with locks.face:`, `with locks.body:`, or both: `with locks:`.
    Made alone (`PoserLocks()`), it has networks of its own."""

    def __init__(self, turns: PoserTurns | None = None, owner=None):
        self.turns = turns or PoserTurns()
        owner = owner if owner is not None else object()
        self.face = Part(self.turns.face, owner)
        self.body = Part(self.turns.body, owner)

    def __enter__(self):
        self.face.acquire()
        try:
            self.body.acquire()
        except BaseException:
            self.face.release()
            raise
        return self

    def __exit__(self, *exc):
        self.body.release()
        self.face.release()
