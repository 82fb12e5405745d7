"""Turns on the shared networks (talkinghead.turns): the avatars waiting for a part get it round-robin, and one
that keeps asking cannot keep it from the others."""
from __future__ import annotations

import threading
import time

from talkinghead.turns import PoserLocks, PoserTurns, TurnLock


def waiting(lock: TurnLock) -> int:
    return sum(len(queue) for queue in lock._queues.values())


def queue_up(lock: TurnLock, owner: str, served: list) -> threading.Thread:
    """A thread that takes one turn as `owner` and notes it; returns once it waits."""
    before = waiting(lock)

    def take():
        lock.acquire(owner)
        served.append(owner)
        lock.release()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while waiting(lock) == before and time.monotonic() < deadline:
        time.sleep(0.001)
    return thread


def test_waiting_avatars_are_served_round_robin_not_first_come():
    lock, served = TurnLock(), []
    lock.acquire("holder")
    threads = [queue_up(lock, owner, served) for owner in ("a", "a", "a", "b", "c")]
    lock.release()
    for thread in threads:
        thread.join(timeout=5)
    assert served == ["a", "b", "c", "a", "a"]


def test_an_avatar_that_keeps_asking_cannot_keep_the_part_from_another():
    lock, stop, turns = TurnLock(), threading.Event(), []

    def busy():
        while not stop.is_set():
            lock.acquire("busy")
            turns.append("busy")
            time.sleep(0.002)
            lock.release()

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    time.sleep(0.05)
    asked = len(turns)
    lock.acquire("other")
    got = len(turns)
    lock.release()
    stop.set()
    thread.join(timeout=5)
    assert got - asked <= 1, f"the busy avatar took {got - asked} turns while the other waited"


def test_both_parts_taken_together_and_one_at_a_time_across_avatars():
    turns = PoserTurns()
    alice, bob = turns.for_avatar("alice"), turns.for_avatar("bob")
    inside = []
    with alice:
        thread = threading.Thread(target=lambda: (bob.face.acquire(), inside.append("bob"), bob.face.release()))
        thread.start()
        time.sleep(0.05)
        assert inside == []  # alice holds both parts: bob's face waits
    thread.join(timeout=5)
    assert inside == ["bob"]
    with alice.face, bob.body:  # different parts run at once
        pass
    assert isinstance(PoserLocks().face, type(alice.face))  # alone: networks of its own
