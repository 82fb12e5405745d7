"""The smooth stream's caches: keyframe frames are exact, faces are keyed by the quantised pose, and a new
character or an event never leaves old work on screen."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import torch

from talkinghead import pose as P
from talkinghead.smooth import (FACE_STEPS, KEYFRAME_DUTY, KEYFRAME_LOOKAHEAD, VOWEL_STEPS, FaceCache, SmoothSource,
                                face_key, quantize_face)


def test_quantize_face_rounds_only_eyebrow_and_face_values():
    pose = np.linspace(0, 1, 45, dtype=np.float32)
    q = quantize_face(pose)
    vowels = [P.INDEX[f"mouth_{v}_index"] for v in ("aaa", "iii", "uuu", "eee", "ooo")]
    others = [i for i in range(P.NUM_EYEBROW + P.NUM_FACE) if i not in vowels]
    assert np.allclose(q[others] * FACE_STEPS, np.round(q[others] * FACE_STEPS))
    assert np.abs(q[others] - pose[others]).max() <= 0.5 / FACE_STEPS + 1e-6
    assert np.allclose(q[vowels] * VOWEL_STEPS, np.round(q[vowels] * VOWEL_STEPS))
    assert (q[P.ROTATION] == pose[P.ROTATION]).all()
    assert quantize_face(q).tobytes() == q.tobytes()


def test_face_key_ignores_rotation_and_separates_face_shapes():
    a = quantize_face(np.zeros(45, np.float32))
    b = a.copy()
    b[P.INDEX["head_x_index"]] = 0.7
    c = a.copy()
    c[P.INDEX["mouth_aaa_index"]] = 1 / VOWEL_STEPS
    assert face_key(a) == face_key(b) and face_key(a) != face_key(c)


def test_face_cache_is_lru_and_capped():
    cache = FaceCache(max_entries=2)
    for key in (b"a", b"b"):
        cache.put(key, torch.zeros(1))
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", torch.zeros(1))
    assert b"b" not in cache and b"a" in cache and b"c" in cache and len(cache) == 2
    assert cache.get(b"zzz") is None and (cache.hits, cache.misses) == (1, 1)


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def source(real_poser):
    clock = Clock()
    state = {"generation": 0, "pose": quantize_face(np.zeros(45, np.float32))}
    src = SmoothSource(real_poser, lambda t: state["pose"], lambda: state["generation"], lambda: 25.0, clock)
    src.state = state
    src.clock = clock
    return src  # the worker thread is not started: tests drive it by hand


def test_frame_at_a_keyframe_time_is_the_exact_render(source, real_poser):
    pose = np.zeros(45, np.float32)
    pose[P.INDEX["head_x_index"]] = 0.4
    pose[P.INDEX["mouth_aaa_index"]] = 0.5
    source.state["pose"] = quantize_face(pose)
    frame, meta = source.frame_at(100.0)  # no keyframe yet: made exactly, now
    exact = real_poser.render(source.state["pose"])
    assert np.abs(frame.astype(int) - exact.astype(int)).max() <= 1


def test_in_between_frame_blends_neighbouring_keyframes(source, real_poser):
    still = quantize_face(np.zeros(45, np.float32))
    turned = still.copy()
    turned[P.INDEX["head_y_index"]] = 0.3
    source.state["pose"] = still
    source.frame_at(100.0)
    source.state["pose"] = turned
    assert source.scheduler.keyframe_job(101.0)  # the right keyframe, at t = 101 s, with the head turned
    source.state["pose"] = quantize_face(still + (turned - still) * 0.5)
    middle = source.frame_at(100.5)[0].astype(float)
    exact = real_poser.render(source.state["pose"]).astype(float)
    rgb = lambda a: a[..., :3] * a[..., 3:] / 255 + 128 * (1 - a[..., 3:] / 255)  # noqa: E731 over grey
    mse = np.mean((rgb(middle) - rgb(exact)) ** 2)
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 35  # close to the exact render of the pose it shows


def test_new_character_clears_faces_and_keyframes(source):
    source.frame_at(100.0)
    assert len(source.faces) == 1 and source.keyframes
    source.image_changed()
    assert len(source.faces) == 0 and not source.keyframes


def test_a_new_character_shows_as_uploaded_until_the_workers_made_its_first_keyframe(source, real_poser):
    """The frame thread does not stop for a new character's first keyframe (~0.5 s): it shows the image at
    once, and the posed frames follow."""
    source.frame_at(100.0)
    source.start()
    try:
        source.image_changed()
        frame, meta = source.frame_at(100.04)
        assert meta["placeholder"] and frame is real_poser.rgba  # no render on the frame thread
        assert meta["character"] == source.character
        deadline = time.monotonic() + 60
        while source.frame_at(100.04)[1].get("placeholder") and time.monotonic() < deadline:
            time.sleep(0.05)
        frame, meta = source.frame_at(100.0)
        assert not meta.get("placeholder")
        assert np.abs(frame.astype(int) - real_poser.render(source.state["pose"]).astype(int)).max() <= 1
    finally:
        source.close()


def test_workers_start_nothing_while_a_new_character_is_coming(source):
    """A load waits for the poser's locks: the workers give them up instead of making old-character work."""
    pose = source.state["pose"].copy()
    pose[P.INDEX["mouth_aaa_index"]] = 0.5
    source.image_coming()
    assert source._compute_face(pose, future=0) is None and len(source.faces) == 0
    assert source._render_keyframe(101.0, pose, future=0) is None
    source.image_kept()  # the upload failed: work resumes for the old character
    assert source._compute_face(pose, future=0) is not None
    source.image_coming()
    source.image_changed()
    assert source._render_keyframe(101.0, pose, future=0) is not None


def test_a_keyframe_begun_for_the_old_character_is_dropped(source):
    """A keyframe whose (cached) face was taken before a new character came is not kept for the new one."""
    import threading

    source.frame_at(100.0)  # the face of the fixture's pose is cached now
    result, has_face = {}, threading.Event()
    face_for_keyframe = source._face_for_keyframe
    source._face_for_keyframe = lambda *args: (face_for_keyframe(*args), has_face.set())[0]
    with source._locks.body:  # as a load holds the poser while it sets the new image
        worker = threading.Thread(
            target=lambda: result.setdefault("kf", source._render_keyframe(101.0, source.state["pose"], future=0)))
        worker.start()
        assert has_face.wait(30)  # the worker has its face and waits for the lock
        source.image_changed()
    worker.join()
    assert result["kf"] is None


def test_without_running_workers_the_first_frame_is_rendered_at_once(source, real_poser):
    source.image_changed()
    frame, meta = source.frame_at(100.0)  # as at start-up, before the workers run
    assert "placeholder" not in meta
    assert np.abs(frame.astype(int) - real_poser.render(source.state["pose"]).astype(int)).max() <= 1


def test_event_makes_future_keyframes_stale(source):
    source.frame_at(100.0)
    assert source.scheduler.keyframe_job(101.0)
    assert not source.scheduler.keyframe_job(101.0)  # already there, same generation
    source.state["generation"] += 1
    assert source.scheduler.keyframe_job(101.0)  # re-rendered for the new future
    assert source.keyframes.get(101.0).generation == 1


def test_keyframes_are_planned_closer_while_the_head_turns(source):
    head = P.INDEX["neck_z_index"]

    def pose_at(t):
        p = np.zeros(45, np.float32)
        p[head] = 0.6 * np.clip(t - 102.0, 0.0, 1.0)  # rest, then a turn during [102, 103], then rest
        return p

    source.animation.pose_at = pose_at
    assert source.keyframe_interval == 2.0
    assert source.planned_keyframes(98.0, 102.0) == [98.0, 100.0]  # resting: one every 2 s
    turn = source.planned_keyframes(102.0, 104.0)
    assert 102.0 in turn and len(turn) >= 4
    gaps = np.diff([pose_at(t)[head] for t in turn + [104.0]])
    assert gaps.max() <= 0.2 + 1e-6  # KEYFRAME_GAP for the neck tilt
    source.state["generation"] += 1  # a new future: planned again
    source.animation.pose_at = lambda t: np.zeros(45, np.float32)
    assert source.planned_keyframes(102.0, 104.0) == [102.0]


def test_a_slow_keyframe_worker_gets_fewer_evenly_spread_keyframes_not_a_late_plan(source):
    head = P.INDEX["neck_z_index"]
    source.animation.pose_at = (lambda t: np.full(45, 0.0, np.float32)
                                + np.eye(45, dtype=np.float32)[head] * 0.6 * np.sin(t))
    now = 100.0
    full_plan = source.planned_keyframes(now + 0.1, now + KEYFRAME_LOOKAHEAD)
    source.scheduler.keyframe_cost = 0.1  # a fast worker: the whole plan
    assert source.scheduler.keyframes_to_make(now) == full_plan
    source.scheduler.keyframe_cost = 1.0  # a slow one: what it can make in time, interval starts first
    slow = source.scheduler.keyframes_to_make(now)
    assert len(slow) <= (KEYFRAME_LOOKAHEAD - 1.0) / 1.0 * KEYFRAME_DUTY
    assert [t for t in slow if t % source.keyframe_interval == 0] == [t for t in full_plan
                                                                    if t % source.keyframe_interval == 0 and t >= 101]
    source.frame_at(now)
    assert source.scheduler.keyframe_job(slow[0])  # made: no longer to make, nor counted against the budget
    assert slow[0] not in source.scheduler.keyframes_to_make(now)


def test_a_keyframe_for_the_new_future_replaces_the_old_ones_before_it(source):
    source.frame_at(100.0)
    for t in (100.5, 101.0):
        assert source.scheduler.keyframe_job(t)
    source.state["generation"] += 1
    assert source.scheduler.keyframe_job(101.0)
    assert sorted(kf.t for kf in source.keyframes) == [100.0, 101.0]
    assert all(kf.generation == 1 for kf in source.keyframes if kf.t > 100.0)


def test_worker_fills_faces_for_coming_frames(source):
    mouth = P.INDEX["mouth_aaa_index"]

    def pose_at(t):
        p = np.zeros(45, np.float32)
        p[mouth] = (t - 100.0) * 2  # the mouth opens over the next half second
        return quantize_face(np.clip(p, 0, 1))

    source.animation.pose_at = pose_at
    source.frame_at(100.0)
    jobs = 0
    while source.scheduler.face_job(100.0, 100.3) and jobs < 20:
        jobs += 1
    ticks = [100.0 + i / 25 for i in range(8)]
    assert all(face_key(pose_at(t)) in source.faces for t in ticks)
    misses = source.faces.misses
    for t in ticks:
        source.frame_at(t)
    assert source.faces.misses == misses and source.stale_frames == 0


# ---- the frame grid and events -------------------------------------------------------------------------
def test_renderer_shows_the_poses_of_the_frame_grid():
    """Frames are rendered for multiples of 1/fps (the times the face worker prepares), in order."""
    import time

    from talkinghead.renderer import Renderer

    times = []
    renderer = Renderer(lambda t: (times.append(t) or np.zeros((2, 2, 4), np.uint8), {}), fps=lambda: 25.0)
    renderer.start()
    time.sleep(0.5)
    renderer.close()
    assert len(times) >= 8
    ticks = np.array(times) * 25.0
    assert np.allclose(ticks, np.round(ticks), atol=1e-6) and np.all(np.diff(ticks) >= 1 - 1e-6)


def test_a_frame_is_encoded_by_the_first_viewer_that_asks_and_only_once(monkeypatch):
    """The render thread only renders: PNG encoding (a quarter of a frame's time on 2 cores) is the viewers'."""
    import io

    from PIL import Image

    from talkinghead import encode
    from talkinghead.renderer import FrameSlot

    encodings = []
    png = encode.png
    monkeypatch.setattr(encode, "png", lambda rgba: encodings.append(rgba) or png(rgba))
    rgba = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    slot = FrameSlot()
    slot.publish(rgba, 1.0)
    assert encodings == []  # nothing encoded while nobody watches
    frame = slot.latest()
    data = frame.png
    assert frame.png is data and len(encodings) == 1
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), rgba)


def test_after_an_event_the_first_new_face_is_for_the_next_frame_and_shows_once_made(source):
    aaa, iii = P.INDEX["mouth_aaa_index"], P.INDEX["mouth_iii_index"]

    def pose_at(t):
        p = np.zeros(45, np.float32)
        if source.state["generation"] == 1:  # the event at t = 100: the mouth opens, then widens
            p[aaa] = np.clip((t - 100.0) * 10.0, 0.0, 1.0)
            p[iii] = np.clip((t - 100.2) * 10.0, 0.0, 1.0)
        return quantize_face(p)

    source.animation.pose_at = pose_at
    source.frame_at(100.0)
    source.state["generation"] = 1
    assert source.scheduler.face_jobs()
    (made_t, generation, key), = source._made
    assert generation == 1 and made_t == pytest.approx(100.04)  # the next frame: 1/25 s after the event
    assert key in source.faces and key == face_key(pose_at(100.04))
    # A frame before that time shows the last face (the closed mouth) ...
    meta = source.frame_at(100.0)[1]
    assert meta["face_shown"] == face_key(pose_at(99.0))
    # ... from that time on the new face shows ...
    source.clock.t = made_t
    meta = source.frame_at(made_t)[1]
    assert not meta["stale_face"] and meta["face_shown"] == key
    # ... also in later frames whose own face is still missing (not the old face).
    meta = source.frame_at(made_t + 0.2)[1]
    assert meta["stale_face"] and meta["face_shown"] == key


def test_a_face_for_an_old_future_stops_between_its_networks(source, monkeypatch):
    """An event between the eyebrow combiner and the face morpher: no backend run to cancel at that moment,
    yet the face morpher does not run for a future that is gone."""
    morph_eyebrows = source.poser.morph_eyebrows

    def eyebrows_then_event(*args):
        out = morph_eyebrows(*args)
        source.state["generation"] += 1
        return out

    monkeypatch.setattr(source.poser, "morph_eyebrows", eyebrows_then_event)
    monkeypatch.setattr(source.poser, "face_morph", lambda *a: pytest.fail("the face morpher ran"))
    pose = source.state["pose"].copy()
    pose[P.INDEX["mouth_ooo_index"]] = 0.5
    assert source._compute_face(pose, future=source.state["generation"]) is None
    assert face_key(pose) not in source.faces


def test_keyframes_wait_until_the_face_worker_has_seen_an_event(source):
    source.frame_at(100.0)
    source.scheduler.face_generation = source.state["generation"]
    source.state["generation"] += 1  # an event the face worker has not picked up yet
    rendered = source.keyframes_rendered
    assert not source.scheduler.keyframe_jobs()
    assert source.scheduler.face_jobs() is not None  # the face worker takes the event (its first face)...
    assert source.scheduler.keyframe_jobs()  # ...then keyframes go on
    assert source.keyframes_rendered == rendered + 1


@pytest.mark.skipif(not hasattr(os, "setpriority") or sys.platform != "linux", reason="Linux thread priorities")
def test_smooth_backend_threads_are_created_at_the_workers_priority(monkeypatch):
    """The backend's inference threads (created when it compiles) yield the cores to the frame thread."""
    import threading

    from talkinghead import backends, smooth

    seen = {}

    def fake_apply_backend(poser, name, *, threads):
        def inference_thread():
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        pool = threading.Thread(target=inference_thread)  # as OpenVINO starts its pool while compiling
        pool.start()
        pool.join()
        seen["threads"] = threads
        return poser

    monkeypatch.setattr(backends, "apply_backend", fake_apply_backend)
    caller_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    poser = object()
    assert smooth.apply_backend(poser, "openvino") is poser
    if caller_nice > smooth.WORKER_NICENESS:
        pytest.skip("the test runs at a lower priority than the workers'")
    assert seen == {"nice": smooth.WORKER_NICENESS, "threads": smooth.SMOOTH_BACKEND_THREADS}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller_nice  # the caller keeps its own

    def failing(poser, name, *, threads):
        raise backends.BackendError("the openvino backend is not installed")

    monkeypatch.setattr(backends, "apply_backend", failing)
    with pytest.raises(backends.BackendError, match="not installed"):
        smooth.apply_backend(poser, "openvino")
