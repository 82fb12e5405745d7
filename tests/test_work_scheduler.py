"""The smooth stream's work scheduler alone, with fake work (no poser): which face or keyframe the workers
make next, and what waits for what after an event."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from talkinghead import pose as P
from talkinghead.smooth.faces import FaceCache, face_key, quantize_face
from talkinghead.smooth.keyframes import Keyframe, KeyframeStore
from talkinghead.smooth.schedule import Animation, WorkScheduler

MOUTH = P.INDEX["mouth_aaa_index"]


class FakeWork:
    """The smooth source's side: makes faces and keyframes instantly, and records what it was asked."""

    def __init__(self, pose_at):
        self.generation, self.now = 0, 100.0
        lock = threading.Condition()
        self.faces = FaceCache(100)
        self.keyframes = KeyframeStore(2.0, lock)
        self.made, self.rendered, self.new_futures = [], [], 0
        self.scheduler = WorkScheduler(
            Animation(pose_at, lambda: self.generation, lambda: 25.0, lambda: self.now), lock, self.keyframes,
            self.faces, make_face=self.make_face, render_keyframe=self.render_keyframe,
            store=lambda kf: self.keyframes.add(kf, self.now, self.generation),
            face_made=lambda t, generation, key: self.made.append((t, generation, key)),
            new_future=self.new_future, character=lambda: 0)

    def make_face(self, pose, future=None):
        face = torch.zeros(1)
        self.faces.put(face_key(pose), face)
        return face

    def render_keyframe(self, t, pose, future=None):
        self.rendered.append(t)
        tiny = np.zeros(1)
        return Keyframe(t, self.generation if future is None else future, 0, pose, tiny, tiny, tiny)

    def new_future(self):
        self.new_futures += 1


def opening_mouth(t: float) -> np.ndarray:
    p = np.zeros(45, np.float32)
    p[MOUTH] = np.clip((t - 100.0) * 5, 0, 1)  # the mouth opens over a fifth of a second
    return quantize_face(p)


def test_the_face_job_makes_the_first_missing_face_of_the_coming_ticks_and_says_for_which_frame():
    work = FakeWork(opening_mouth)
    work.faces.put(face_key(opening_mouth(100.0)), torch.zeros(1))
    assert work.scheduler.face_job(100.0, 100.3)
    (t, generation, key), = work.made
    assert generation == 0 and key == face_key(opening_mouth(t)) and t == pytest.approx(100.04)
    while work.scheduler.face_job(100.0, 100.3):
        pass
    assert all(face_key(opening_mouth(100.0 + i / 25)) in work.faces for i in range(8))


def test_an_event_makes_the_face_worker_rush_the_next_frames_face_while_keyframes_wait():
    work = FakeWork(opening_mouth)
    work.keyframes.add(Keyframe(104.0, 0, 0, opening_mouth(104.0), *[np.zeros(1)] * 3), 100.0, 0)
    work.scheduler.face_generation = 0
    work.generation = 1  # an event the face worker has not seen yet
    assert not work.scheduler.keyframe_jobs() and work.rendered == []
    assert work.scheduler.face_jobs() and work.new_futures == 1
    assert work.made[0][:2] == (pytest.approx(100.04), 1)  # the next frame, not one a face's cost later
    assert not work.scheduler.rush
    assert work.scheduler.keyframe_jobs() and work.rendered  # then keyframes go on


def test_a_keyframe_job_skips_one_made_for_this_future_and_keeps_none_for_an_old_one():
    work = FakeWork(lambda t: np.zeros(45, np.float32))
    assert work.scheduler.keyframe_job(101.0) and not work.scheduler.keyframe_job(101.0)
    work.generation = 1
    assert work.scheduler.keyframe_job(101.0, generation=0) is False  # there already, for future 0
    assert work.scheduler.keyframe_job(102.0, generation=0)  # made, but for a future that is gone: not kept
    assert work.keyframes.get(102.0) is None and work.rendered == [101.0, 102.0]


def test_a_rush_face_does_not_count_in_the_face_cost():
    scheduler = FakeWork(opening_mouth).scheduler
    scheduler.rush = True
    scheduler.face_took(0.01)
    assert scheduler.face_cost == 0.2
    scheduler.rush = False
    scheduler.face_took(0.1)
    assert scheduler.face_cost == pytest.approx(0.17)
