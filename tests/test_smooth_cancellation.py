"""Stopping the smooth stream's work alone (no poser): an event stops only the parts at work for an old
future, a coming character stops them all, and work that waited checks before it goes on."""
from __future__ import annotations

import threading

import pytest

from talkinghead import backends
from talkinghead.smooth.cancellation import NETWORKS, Cancellation


@pytest.fixture
def cancelled(monkeypatch):
    """The networks cancel_runs was called for, in order."""
    calls = []
    monkeypatch.setattr(backends, "cancel_runs", lambda poser, names, sticky: calls.append((names, sticky)))
    monkeypatch.setattr(backends, "reset_cancels", lambda poser, names: None)
    return calls


def test_an_event_stops_only_the_parts_working_for_an_old_future(cancelled):
    state = {"generation": 1}
    cancellation = Cancellation(object(), lambda: state["generation"], threading.Condition())
    with cancellation.cancellable("face", 1), cancellation.cancellable("body", 0):
        cancellation.event()
        assert cancelled == [(NETWORKS["body"], True)]
    cancellation.event()  # nothing at work any more
    assert len(cancelled) == 1


def test_a_coming_character_stops_all_work_and_makes_new_work_stale_until_it_settles(cancelled):
    cancellation = Cancellation(object(), lambda: 0, threading.Condition())
    with cancellation.cancellable("face", 0), cancellation.cancellable("body", None):  # None: a frame waits
        cancellation.stop_for_new_image()
    assert cancelled == [(NETWORKS["face"], True)]
    with pytest.raises(backends.Cancelled):
        cancellation.stop_if_stale(0)
    cancellation.stop_if_stale(None)  # work a frame waits for goes on
    cancellation.image_settled()
    cancellation.stop_if_stale(0)
    with pytest.raises(backends.Cancelled):
        cancellation.stop_if_stale(1)  # made for a future that is not the current one
