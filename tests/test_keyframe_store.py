"""The smooth stream's keyframe store alone: which keyframes a time falls between, and which ones a new
keyframe replaces or the clock leaves behind."""
from __future__ import annotations

import threading

import numpy as np

from talkinghead.smooth.keyframes import Keyframe, KeyframeStore


def keyframe(t: float, generation: int = 0) -> Keyframe:
    tiny = np.zeros(1)
    return Keyframe(t, generation, 0, np.zeros(45, np.float32), tiny, tiny, tiny)


def store_of(*keyframes: Keyframe, now: float = 0.0) -> KeyframeStore:
    store = KeyframeStore(2.0, threading.Condition())
    for kf in keyframes:
        store.add(kf, now=now, generation=kf.generation)
    return store


def times(store: KeyframeStore) -> list[float]:
    return sorted(kf.t for kf in store)


def test_a_time_falls_between_the_latest_keyframe_at_or_before_it_and_the_next():
    store = store_of(keyframe(100.0), keyframe(100.5), keyframe(102.0))
    left, right = store.bracket(101.0)
    assert (left.t, right.t) == (100.5, 102.0)
    left, right = store.bracket(100.5)  # a keyframe's own time: it is the left one
    assert (left.t, right.t) == (100.5, 102.0)
    assert store.bracket(99.0)[0] is None and store.bracket(103.0)[1] is None
    assert KeyframeStore(2.0, threading.Condition()).bracket(100.0) == (None, None)


def test_keys_are_times_on_the_finest_planned_step():
    store = store_of(keyframe(100.0))
    assert store.get(100.0).t == 100.0 and store.get(100.0 + 1e-9) is store.get(100.0)
    assert store.get(100.125) is None  # 2 s / 16: the next key
    store.add(keyframe(100.0, generation=1), now=0.0, generation=1)
    assert len(store) == 1 and store.get(100.0).generation == 1  # same time: replaced


def test_a_new_futures_keyframe_replaces_the_old_ones_between_now_and_it():
    store = store_of(keyframe(99.0), keyframe(100.5), keyframe(101.0), keyframe(103.0), now=99.5)
    store.add(keyframe(102.0, generation=1), now=100.0, generation=1)
    # 99.0 (before now) stays: frames need it; 103.0 (after it) carries the motion on until a new one lands
    assert times(store) == [99.0, 102.0, 103.0]
    assert store.made_for(1) == {store.key(102.0)} and store.last_time(1) == 102.0 and store.last_time() == 103.0


def test_a_stale_keyframe_replaces_nothing():
    store = store_of(keyframe(100.5), keyframe(101.0), now=99.0)
    store.add(keyframe(102.0, generation=0), now=99.0, generation=1)  # made for a future an event replaced
    assert times(store) == [100.5, 101.0, 102.0]


def test_the_clock_leaves_keyframes_behind_but_the_latest_before_now_stays():
    store = store_of(keyframe(96.0), keyframe(98.0), keyframe(99.0), now=90.0)
    store.add(keyframe(102.0), now=100.0, generation=0)
    assert times(store) == [99.0, 102.0]
    store.clear()
    assert len(store) == 0 and store.last_time() is None
