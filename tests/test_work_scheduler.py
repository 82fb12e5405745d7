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
from talkinghead.smooth import interpolation
from talkinghead.smooth.schedule import MAX_ERROR, Animation, WorkScheduler

MOUTH = P.INDEX["mouth_aaa_index"]


class FakeWork:
    """The smooth source's side: makes faces and keyframes instantly, and records what it was asked."""

    def __init__(self, pose_at, urgent=None, live=None):
        self.generation, self.now = 0, 100.0
        lock = threading.Condition()
        self.faces = FaceCache(100)
        self.keyframes = KeyframeStore()
        self.made, self.rendered, self.new_futures = [], [], 0
        self.scheduler = WorkScheduler(
            Animation(pose_at, lambda: self.generation, lambda: 25.0, lambda: self.now, urgent=urgent, live=live),
            lock,
            self.keyframes, self.faces, make_face=self.make_face, render_keyframe=self.render_keyframe,
            face_made=lambda t, generation, key: self.made.append((t, generation, key)),
            new_future=self.new_future, character=lambda: 0)

    def make_face(self, pose, future=None):
        face = torch.zeros(1)
        self.faces.put(face_key(pose), face)
        return face

    def render_keyframe(self, pose):
        self.rendered.append(pose)
        tiny = np.zeros((1, 1, 1), np.float16)
        keyframe = Keyframe(pose, 0, tiny, tiny, tiny)
        self.keyframes.add(keyframe)
        return keyframe

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
    work.scheduler.urgent_seen = 0  # the face worker is up to date
    work.generation = 1  # an event the face worker has not seen yet
    assert not work.scheduler.keyframe_jobs() and work.rendered == []
    assert work.scheduler.face_jobs() and work.new_futures == 1
    assert work.made[-1][:2] == (pytest.approx(100.04), 1)  # the next frame, not one a face's cost later
    assert not work.scheduler.rush
    assert work.scheduler.keyframe_jobs() and work.rendered  # then keyframes go on


def test_a_capture_update_is_no_rush_and_keyframes_go_on():
    """Face capture changes the future many times a second: keyframes must not wait for each change."""
    commands = {"n": 0}
    work = FakeWork(opening_mouth, urgent=lambda: commands["n"])
    work.scheduler.urgent_seen = 0
    work.generation = 1  # a capture update: the future changed, no command
    assert work.scheduler.keyframe_jobs() and len(work.rendered) == 1
    commands["n"] += 1  # a command
    assert not work.scheduler.keyframe_jobs()


def test_a_keyframe_is_made_once_for_a_pose_that_keeps_coming_back():
    def breathing(t):
        p = np.zeros(45, np.float32)
        p[P.INDEX["breathing_index"]] = 0.5 + 0.5 * np.sin(t)
        return p

    work = FakeWork(breathing)
    work.scheduler.urgent_seen = 0
    assert work.scheduler.keyframe_jobs()
    assert work.scheduler.keyframe_jobs()  # the other end of a breath
    breaths = sorted(float(p[P.INDEX["breathing_index"]]) for p in work.rendered)
    assert breaths == [0.0, 1.0]
    work.generation = 1  # a new future, the same poses: served already
    assert not work.scheduler.keyframe_jobs() and len(work.rendered) == 2


def test_a_rush_face_does_not_count_in_the_face_cost():
    scheduler = FakeWork(opening_mouth).scheduler
    scheduler.rush = True
    scheduler.face_took(0.01)
    assert scheduler.face_cost == 0.2
    scheduler.rush = False
    scheduler.face_took(0.1)
    assert scheduler.face_cost == pytest.approx(0.17)


class LiveHead:
    """A face capture's head turning back and forth (yaw), as the engine gives it to the smooth stream: the
    future is the latest pose, held; the frame thread records each pose it shows."""

    def __init__(self):
        self.latest = self.head(0.0)
        self.work = FakeWork(lambda t: self.latest, urgent=lambda: 0, live=lambda t: True)
        self.work.scheduler.urgent_seen = 0

    @staticmethod
    def head(yaw: float) -> np.ndarray:
        p = np.zeros(45, np.float32)
        p[P.INDEX["head_y_index"]], p[P.INDEX["body_y_index"]] = yaw, yaw / 2
        return p

    def show(self, seconds: float, yaw_at) -> None:
        for _ in range(int(seconds * 25)):
            self.work.now += 0.04
            self.latest = self.head(yaw_at(self.work.now))
            self.work.scheduler.shown.add(self.work.now, 0, self.latest)

    def served(self, poses) -> list[float]:
        return [self.work.keyframes.error(p) for p in poses]


def test_a_moving_capture_gets_keyframes_where_it_went_lately_worst_served_first():
    """The plan alone could only ask for the live pose; a turning head's path is filled in from the poses shown
    over the last seconds, the farthest from any keyframe first, until every one of them is served."""
    live = LiveHead()
    live.work.render_keyframe(live.head(0.0))
    swing = lambda t: 0.8 * np.sin(2 * np.pi * 0.5 * (t - 100.0))  # ±2 gaps of yaw every 2 s
    live.show(3.0, swing)
    shown = [live.head(swing(100.0 + k * 0.04)) for k in range(1, 76)]
    assert live.work.scheduler.keyframe_jobs()
    first = live.work.rendered[-1]  # an end of the swing: the farthest from the keyframe at 0
    assert min(interpolation.distance(first, live.head(end)) for end in (-0.8, 0.8)) < 0.3
    while live.work.scheduler.keyframe_jobs():
        live.show(0.4, swing)  # the head goes on turning while each keyframe is made
        assert len(live.work.rendered) < 20
    assert max(live.served(shown)) <= MAX_ERROR  # the whole swing is served
    # ~1 gap apart over the 4 gaps of yaw, and the other end of a breath where the head turns round slowly
    assert len(live.work.rendered) <= 10


def test_a_capture_that_comes_to_rest_gets_its_live_pose_before_the_path_behind_it():
    live = LiveHead()
    live.work.render_keyframe(live.head(0.0))
    live.show(2.0, lambda t: 0.8 * np.sin(2 * np.pi * 0.5 * (t - 100.0)))  # a turn never served ...
    live.show(0.5, lambda t: 0.6)  # ... then the head rests, turned
    assert live.work.scheduler.keyframe_jobs()
    assert interpolation.distance(live.work.rendered[-1], live.head(0.6)) < 1e-6


def test_without_a_capture_the_poses_shown_are_not_planned_for():
    work = FakeWork(lambda t: np.zeros(45, np.float32))
    work.render_keyframe(np.zeros(45, np.float32))
    far = np.zeros(45, np.float32)
    far[P.INDEX["head_y_index"]] = 0.8
    work.scheduler.shown.add(work.now, 0, far)  # (the frame thread records them only under a capture)
    assert not work.scheduler.keyframe_jobs()
