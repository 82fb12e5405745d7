"""The smooth stream's caches: frames at a keyframe's pose are exact, keyframes serve their pose at any time,
the worker renders them where coming frames need them, faces are keyed by the quantised pose, and a new
character or an event never leaves old work on screen."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import torch

from talkinghead import pose as P
from talkinghead.smooth import ANY, FACE_STEPS, MAX_ERROR, VOWEL_STEPS, FaceCache, SmoothSource, face_key, quantize_face


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


def test_frame_at_a_keyframes_pose_is_the_exact_render(source, real_poser):
    pose = np.zeros(45, np.float32)
    pose[P.INDEX["head_x_index"]] = 0.4
    pose[P.INDEX["mouth_aaa_index"]] = 0.5
    source.state["pose"] = quantize_face(pose)
    frame, meta = source.frame_at(100.0)  # no keyframe yet: made exactly, now
    exact = real_poser.render(source.state["pose"])
    assert np.abs(frame.astype(int) - exact.astype(int)).max() <= 1
    frame, meta = source.frame_at(500.0)  # any time later: the same keyframe, no new render
    assert np.abs(frame.astype(int) - exact.astype(int)).max() <= 1
    assert source.keyframes_rendered == 1 and meta["blend"] == [1.0]


def rgb_psnr(a: np.ndarray, b: np.ndarray) -> float:
    rgb = lambda x: x[..., :3] * x[..., 3:] / 255 + 128 * (1 - x[..., 3:] / 255)  # noqa: E731 over grey
    mse = np.mean((rgb(a.astype(float)) - rgb(b.astype(float))) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-9))


def test_a_frame_between_keyframes_blends_them_by_its_pose(source, real_poser):
    still = quantize_face(np.zeros(45, np.float32))
    turned = still.copy()
    turned[P.INDEX["head_y_index"]] = 0.3
    source.state["pose"] = still
    source.frame_at(100.0)
    assert source._make_keyframe(turned) is not None  # a keyframe with the head turned
    source.state["pose"] = quantize_face(still + (turned - still) * 0.5)
    frame, meta = source.frame_at(100.5)
    assert sorted(meta["blend"]) == pytest.approx([0.5, 0.5], abs=0.01)
    assert rgb_psnr(frame, real_poser.render(source.state["pose"])) > 35  # close to the exact render


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
    assert source._render_keyframe(pose, future=ANY) is None
    source.image_kept()  # the upload failed: work resumes for the old character
    assert source._compute_face(pose, future=0) is not None
    source.image_coming()
    source.image_changed()
    assert source._render_keyframe(pose, future=ANY) is not None


def test_a_keyframe_begun_for_the_old_character_is_dropped(source):
    """A keyframe whose (cached) face was taken before a new character came is not kept for the new one."""
    import threading

    source.frame_at(100.0)  # the face of the fixture's pose is cached now
    result, has_face = {}, threading.Event()
    face_for_keyframe = source._face_for_keyframe
    source._face_for_keyframe = lambda *args: (face_for_keyframe(*args), has_face.set())[0]
    with source._locks.body:  # as a load holds the poser while it sets the new image
        worker = threading.Thread(target=lambda: result.setdefault("kf", source._make_keyframe(source.state["pose"])))
        worker.start()
        assert has_face.wait(30)  # the worker has its face and waits for the lock
        source.image_changed()
    worker.join()
    assert result["kf"] is None and len(source.keyframes) == 0


def test_without_running_workers_the_first_frame_is_rendered_at_once(source, real_poser):
    source.image_changed()
    frame, meta = source.frame_at(100.0)  # as at start-up, before the workers run
    assert "placeholder" not in meta
    assert np.abs(frame.astype(int) - real_poser.render(source.state["pose"]).astype(int)).max() <= 1


def test_an_event_keeps_the_keyframes_they_serve_any_future(source):
    source.frame_at(100.0)
    source.state["generation"] += 1
    source.frame_at(100.04)
    assert len(source.keyframes) == 1 and source.keyframes_rendered == 1


def breathing_at(pose: np.ndarray, value: float) -> np.ndarray:
    pose = pose.copy()
    pose[P.INDEX["breathing_index"]] = value
    return pose


def turning_then_resting(t: float) -> np.ndarray:
    """Rest until 102 s, turn the neck over one second, rest again; breathing all along."""
    p = np.zeros(45, np.float32)
    p[P.INDEX["neck_z_index"]] = 0.6 * np.clip(t - 102.0, 0.0, 1.0)
    p[P.INDEX["breathing_index"]] = 0.5 + 0.5 * np.sin(2 * np.pi * t / 4.0)
    return quantize_face(p)


def test_the_keyframe_worker_renders_where_the_coming_frames_need_one_and_then_rests(source):
    source.animation.pose_at = source.animation.base_pose_at = turning_then_resting
    made = []
    while (pose := source.scheduler.next_keyframe(100.0)) is not None and len(made) < 30:
        made.append(pose)
        source._make_keyframe(pose)
    neck = sorted(round(float(p[P.INDEX["neck_z_index"]]), 3) for p in made)
    breaths = {float(p[P.INDEX["breathing_index"]]) for p in made}
    assert breaths <= {0.0, 1.0}  # at the ends of a breath: between them a breath interpolates
    assert neck[:2] == [0.0, 0.0] and min(neck[-2:]) >= 0.55  # two at each rest (breathing in and out)
    assert 2 <= len(made) - 4 <= 6  # and a few along the turn (0.6 of neck_z is three gaps)
    resting = [100.0 + k / 25 for k in range(150) if not 102.0 <= 100.0 + k / 25 <= 103.0]
    assert all(source.keyframes.error(turning_then_resting(t)) <= MAX_ERROR for t in resting)
    # In the turn a frame is served from keyframes at one end of a breath (a breath does not show in a turn):
    # one keyframe along a turn, not two.
    turning = [102.0 + k / 25 for k in range(26)]
    assert all(min(source.keyframes.error(breathing_at(turning_then_resting(t), end)) for end in (0.0, 1.0))
               <= MAX_ERROR for t in turning)
    # Six seconds on, the same poses come back: nothing more to make.
    assert source.scheduler.next_keyframe(104.0) is None and source.scheduler.covered_until >= 110.0


def test_a_capture_pose_far_from_every_keyframe_shows_at_once_and_gets_a_keyframe_next(source, real_poser):
    source.frame_at(100.0)
    turned = source.state["pose"].copy()
    turned[P.INDEX["head_y_index"]] = 0.8  # two gaps away, no keyframe near
    source.state["pose"] = turned
    source.state["generation"] += 1
    frame, meta = source.frame_at(100.04)  # shown from the keyframes there are, now
    assert meta["blend_error"] > MAX_ERROR and source.keyframes_rendered == 1
    pose = source.scheduler.next_keyframe(100.04)
    assert np.allclose(pose[P.ROTATION][:5], turned[P.ROTATION][:5])
    source._make_keyframe(pose)
    frame, meta = source.frame_at(100.08)
    assert rgb_psnr(frame, real_poser.render(turned)) > 40


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
    source.animation.pose_at = source.animation.base_pose_at = turning_then_resting
    source.clock.t = 101.5
    source.frame_at(101.5)
    source.scheduler.face_jobs()  # the face worker is up to date
    source.state["generation"] += 1  # a command the face worker has not picked up yet
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
    assert seen == {"nice": min(caller_nice + smooth.WORKER_NICENESS, 19), "threads": smooth.smooth_backend_threads()}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller_nice  # the caller keeps its own

    def failing(poser, name, *, threads):
        raise backends.BackendError("the openvino backend is not installed")

    monkeypatch.setattr(backends, "apply_backend", failing)
    with pytest.raises(backends.BackendError, match="not installed"):
        smooth.apply_backend(poser, "openvino")
