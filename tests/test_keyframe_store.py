"""The smooth stream's keyframe store and its blend weights alone (no poser): which keyframes a pose blends,
with which weights, how good the blend is said to be, and which keyframes the memory budget drops."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead import pose as P
from talkinghead.smooth import interpolation
from talkinghead.smooth.compose import Blender
from talkinghead.smooth.keyframes import Keyframe, KeyframeStore
from talkinghead.smooth.region import pixel_grid

HEAD_Y, NECK_Z, BREATHING = (P.INDEX[n] for n in ("head_y_index", "neck_z_index", "breathing_index"))
GAP_Y = interpolation.GAP[HEAD_Y - P.ROTATION.start]


def pose(head_y: float = 0.0, neck_z: float = 0.0, breathing: float = 0.0, smile: float = 0.0) -> np.ndarray:
    p = np.zeros(45, np.float32)
    p[HEAD_Y], p[NECK_Z], p[BREATHING] = head_y, neck_z, breathing
    p[P.INDEX["mouth_raised_corner_left_index"]] = smile
    return p


def keyframe(p: np.ndarray, value: float = 0.0, size: int = 2) -> Keyframe:
    fill = np.full((size, size, 4), value, np.float16)
    return Keyframe(p, 0, np.full((size, size, 2), value, np.float16), fill, fill)


def store_of(*poses: np.ndarray, max_bytes: int = 2 ** 30) -> KeyframeStore:
    store = KeyframeStore(max_bytes)
    for p in poses:
        store.add(keyframe(p))
    return store


def weights(store: KeyframeStore, p: np.ndarray) -> dict[float, float]:
    """head_y of each keyframe used -> its weight"""
    used, _ = store.blend(p)
    return {round(float(k.pose[HEAD_Y]), 4): w for k, w in used}


def test_at_a_keyframes_pose_the_frame_is_that_keyframe_alone():
    store = store_of(pose(0.0), pose(0.4), pose(0.0, neck_z=0.2))
    used, error = store.blend(pose(0.4))
    assert [(float(k.pose[HEAD_Y]), w) for k, w in used] == [(pytest.approx(0.4), 1.0)] and error == 0.0


def test_between_two_keyframes_the_weights_follow_the_pose_along_the_line():
    store = store_of(pose(0.0), pose(0.4))
    assert weights(store, pose(0.1)) == {0.0: pytest.approx(0.75, abs=2e-3), 0.4: pytest.approx(0.25, abs=2e-3)}
    _, error = store.blend(pose(0.2))
    assert error == pytest.approx((0.2 / GAP_Y) ** 2, rel=0.01)  # halfway: a quarter of the gap squared


def test_weights_reproduce_the_pose_among_keyframes_around_it():
    corners = [pose(y, z) for y in (0.0, 0.4) for z in (0.0, 0.2)]
    store = store_of(*corners)
    target = pose(0.1, 0.15)
    used, error = store.blend(target)
    assert sum(w for _, w in used) == pytest.approx(1.0)
    reproduced = sum(w * k.pose for k, w in used)
    assert np.allclose(reproduced[P.ROTATION], target[P.ROTATION], atol=0.01)
    assert all(w > 0 for _, w in used) and error < 0.5  # a one-gap cell: 0.5 at its centre


def test_a_pose_the_keyframes_cannot_reach_counts_as_badly_served():
    store = store_of(pose(0.0))
    _, error = store.blend(pose(0.0, breathing=1.0))  # one keyframe: a breath cannot be shown from it
    assert error > 0.5
    store.add(keyframe(pose(0.0, breathing=1.0)))
    _, error = store.blend(pose(0.0, breathing=0.5))  # both ends of the breath: served
    assert error < 0.05


def test_another_face_is_far_from_a_keyframe_at_the_same_rotation():
    store = store_of(pose(0.0), pose(0.4))
    assert store.error(pose(0.0, smile=1.0)) > interpolation.FACE_SCALE  # the smile's keyframe is missing


def test_the_weights_move_continuously_as_the_pose_moves_past_many_keyframes():
    rng = np.random.default_rng(1)
    store = store_of(*[pose(*rng.uniform(-0.5, 0.5, 2), breathing=float(rng.integers(0, 2))) for _ in range(30)])
    previous = None
    for head_y in np.linspace(-0.4, 0.4, 400):
        used, _ = store.blend(pose(head_y, 0.05, breathing=0.3))
        outputs = {k.number: w for k, w in used}
        if previous is not None:  # a keyframe joins or leaves with (nearly) no weight
            change = sum(abs(outputs.get(n, 0.0) - previous.get(n, 0.0)) for n in set(outputs) | set(previous))
            assert change < 0.15
        previous = outputs


def test_extrapolation_beyond_the_keyframes_is_limited():
    store = store_of(pose(0.0), pose(0.1))
    used, error = store.blend(pose(0.8))
    assert sum(abs(w) for _, w in used) <= interpolation.MAX_SPREAD + 1e-9 and error > 1.0


def test_the_least_recently_used_keyframes_go_when_memory_runs_out():
    one = keyframe(pose(0.0), size=8).nbytes
    store = KeyframeStore(max_bytes=3 * one)
    kept = [keyframe(pose(y), size=8) for y in (0.0, 0.1, 0.2)]
    for k in kept:
        store.add(k)
    store.blend(pose(0.0), mark_used=True)  # the first is used again: the second is now the oldest
    store.add(keyframe(pose(0.3), size=8))
    heads = sorted(round(float(k.pose[HEAD_Y]), 1) for k in store)
    assert heads == [0.0, 0.2, 0.3] and store.evicted == 1 and store.nbytes == 3 * one


def test_no_keyframe_no_blend():
    used, error = KeyframeStore().blend(pose())
    assert used == [] and error == float("inf")


def test_the_first_keyframe_of_a_new_face_moves_its_frames_as_the_other_keyframes_do():
    """The first keyframe of a new emotion serves its frames alone until the second is made: those frames
    borrow the motion of the other keyframes' blends (warp only), so they follow the pose instead of standing
    still, and keep the new keyframe's colour."""
    smile = 1.0
    store = KeyframeStore()
    for head_y in (0.0, 0.1, 0.2, 0.3, 0.4):  # the old face's keyframes: its warp offset is 2.5 × head_y
        for breathing in (0.0, 1.0):
            store.add(keyframe(pose(head_y, breathing=breathing), value=2.5 * head_y))
    new_face = keyframe(pose(0.2, smile=smile), value=0.5)
    new_face.color[:] = 3.0  # its own colour change
    store.add(new_face)
    used, motion, _ = store.frame_blend(pose(0.3, smile=smile), mark_used=False)
    assert [k for k, _ in used] == [new_face]
    assert sum(w for _, w in motion) == pytest.approx(0.0, abs=1e-6) and motion
    grid, color, _ = Blender().outputs(used, motion)
    assert np.allclose(grid - pixel_grid(2, 2), 0.75, atol=0.01)  # the warp of head_y 0.3: moved on from 0.5
    assert np.allclose(color, 3.0)  # the new face's colour change alone
    _, motion, error = store.frame_blend(pose(0.2, smile=smile), mark_used=False)
    assert motion == [] and error == 0.0  # at its own pose: the exact keyframe
    store.add(keyframe(pose(0.4, smile=smile), value=1.0))  # its second keyframe: they blend as usual
    used, motion, _ = store.frame_blend(pose(0.3, smile=smile), mark_used=False)
    assert motion == [] and len(used) == 2
