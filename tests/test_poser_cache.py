"""The poser's stage caching (talkinghead/tha3/poser.py): a stage whose inputs did not change is skipped,
and frames stay exactly what the uncached poser computes, on torch and on the OpenVINO backend.

Real weights (skipped without them). The torch tests take ~30 s on 2 cores (each uncached frame ~1 s); the
OpenVINO test reuses the exports cached under data/cache/backends (a first run exports, ~30 s more).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from talkinghead import backends, pose as P, weights

# Tolerances of a backend's frames against torch's, on -1..1 images (as in test_backends.py).
MAX_ABS, MEAN_ABS = 5e-3, 1e-4


@pytest.fixture(scope="module")
def poser(character_rgba):
    """Our own torch poser (not the shared one: these tests switch caching and images)."""
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    poser.set_image(character_rgba)
    return poser


@pytest.fixture
def fresh(poser, character_rgba):
    poser.set_image(character_rgba)
    poser.cache_stages = True
    poser.clear_cache()
    yield poser
    poser.cache_stages = True


def base_pose() -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.uniform(P.LOW, P.HIGH).astype(np.float32)


def uncached(poser, pose: np.ndarray) -> torch.Tensor:
    poser.cache_stages = False
    try:
        return poser.pose(pose)
    finally:
        poser.cache_stages = True


def runs(poser) -> dict[str, int]:
    return {stage: poser.stage_runs[stage] for stage in ("eyebrow_combiner", "face_morpher", "rotator", "editor")}


def ran(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {stage for stage in before if after[stage] != before[stage]}


@pytest.mark.slow
def test_same_pose_twice_is_the_cached_frame(fresh):
    pose = base_pose()
    first = fresh.pose(pose)
    before = runs(fresh)
    again = fresh.pose(pose)
    assert ran(before, runs(fresh)) == set()
    assert fresh.last_cached == ("eyebrow_combiner", "face_morpher", "rotator", "editor")
    assert all(fresh.last_timings[s] == 0.0 for s in fresh.last_cached)
    assert torch.equal(again, first)
    assert torch.equal(again, uncached(fresh, pose))
    np.testing.assert_array_equal(fresh.render(pose), fresh.render(pose))


@pytest.mark.slow
def test_rotation_change_reuses_the_face(fresh):
    pose = base_pose()
    fresh.pose(pose)
    moved = pose.copy()
    moved[P.INDEX["head_x_index"]] = -moved[P.INDEX["head_x_index"]]
    moved[P.INDEX["breathing_index"]] = 0.25
    before = runs(fresh)
    frame = fresh.pose(moved)
    assert ran(before, runs(fresh)) == {"rotator", "editor"}
    assert fresh.last_cached == ("eyebrow_combiner", "face_morpher")
    assert fresh.last_timings["face_morpher"] == 0.0 and fresh.last_timings["editor"] > 0.0
    assert torch.equal(frame, uncached(fresh, moved))


@pytest.mark.slow
def test_face_change_reruns_the_face_and_reuses_the_eyebrows(fresh):
    pose = base_pose()
    fresh.pose(pose)
    talking = pose.copy()
    talking[P.INDEX["mouth_aaa_index"]] = 1.0 - talking[P.INDEX["mouth_aaa_index"]]
    before = runs(fresh)
    frame = fresh.pose(talking)
    assert ran(before, runs(fresh)) == {"face_morpher", "rotator", "editor"}
    assert fresh.last_cached == ("eyebrow_combiner",)
    assert torch.equal(frame, uncached(fresh, talking))

    frowning = talking.copy()
    frowning[P.INDEX["eyebrow_angry_left_index"]] = 1.0 - frowning[P.INDEX["eyebrow_angry_left_index"]]
    before = runs(fresh)
    frame = fresh.pose(frowning)
    assert ran(before, runs(fresh)) == {"eyebrow_combiner", "face_morpher", "rotator", "editor"}
    assert torch.equal(frame, uncached(fresh, frowning))


@pytest.mark.slow
def test_an_earlier_face_comes_back_from_the_cache(fresh):
    """Talking returns to the same mouth shapes: the face stage keeps several, and the rebuilt full image
    gives the same frame."""
    a = base_pose()
    b = a.copy()
    b[P.INDEX["mouth_ooo_index"]] = 1.0 - b[P.INDEX["mouth_ooo_index"]]
    a_rotated = a.copy()
    a_rotated[P.INDEX["neck_z_index"]] = 0.5 * a_rotated[P.INDEX["neck_z_index"]]
    fresh.pose(a)
    fresh.pose(b)
    before = runs(fresh)
    frame = fresh.pose(a_rotated)
    assert ran(before, runs(fresh)) == {"rotator", "editor"}
    assert torch.equal(frame, uncached(fresh, a_rotated))


@pytest.mark.slow
def test_new_image_or_networks_drop_the_cache(fresh, character_rgba):
    pose = base_pose()
    first = fresh.pose(pose)
    mirrored = np.ascontiguousarray(character_rgba[:, ::-1])
    fresh.set_image(mirrored)
    before = runs(fresh)
    other = fresh.pose(pose)
    assert ran(before, runs(fresh)) == {"eyebrow_combiner", "face_morpher", "rotator", "editor"}
    assert not torch.equal(other, first)
    assert torch.equal(other, uncached(fresh, pose))

    fresh.set_image(character_rgba)
    before = runs(fresh)
    assert torch.equal(fresh.pose(pose), first)
    assert ran(before, runs(fresh)) == {"eyebrow_combiner", "face_morpher", "rotator", "editor"}

    fresh.networks["editor"] = Wrapped(fresh.networks["editor"])  # as apply_backend swaps them
    before = runs(fresh)
    assert torch.equal(fresh.pose(pose), first)
    assert ran(before, runs(fresh)) == {"eyebrow_combiner", "face_morpher", "rotator", "editor"}
    fresh.networks["editor"] = fresh.networks["editor"].inner


class Wrapped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        return self.inner(*args)


@pytest.mark.slow
def test_callers_cannot_change_cached_frames(fresh):
    pose = base_pose()
    frame = fresh.pose(pose)
    expected = frame.clone()
    frame.fill_(0.0)  # pose() hands out a copy
    assert torch.equal(fresh.pose(pose), expected)


@pytest.mark.slow
def test_caching_off_runs_every_stage(fresh):
    pose = base_pose()
    fresh.pose(pose)
    fresh.cache_stages = False
    before = runs(fresh)
    fresh.pose(pose)
    assert ran(before, runs(fresh)) == {"eyebrow_combiner", "face_morpher", "rotator", "editor"}
    assert fresh.last_cached == ()


def animation(frames: int) -> list[np.ndarray]:
    """Consecutive 25 FPS poses of the animator, idle then talking, face values quantised like the engine's."""
    from talkinghead.animation import Animator
    from talkinghead.emotions import load_default_templates
    from talkinghead.smooth import quantize_face

    animator = Animator(load_default_templates(), seed=3)
    poses = []
    for k in range(frames):
        t = 5.0 + k / 25
        if k == frames // 2:
            animator.start_talking(t)
        poses.append(quantize_face(animator.pose_at(t)))
    return poses


@pytest.mark.slow
@pytest.mark.skipif("openvino" not in backends.available_backends(), reason="openvino not installed")
def test_openvino_with_caching_matches_torch_on_an_animation(poser, character_rgba):
    from talkinghead.tha3.poser import Poser

    ov = backends.apply_backend(Poser.load(weights.MODELS_DIR, "separable_float", "cpu"), "openvino")
    ov.set_image(character_rgba)
    poser.set_image(character_rgba)
    poser.cache_stages = False
    try:
        poses = animation(6)
        face_runs = ov.stage_runs["face_morpher"]
        for i, pose in enumerate(poses):
            frame = ov.pose(pose)
            diff = (frame - poser.pose(pose)).abs()
            assert diff.max() <= MAX_ABS and diff.mean() <= MEAN_ABS, \
                f"frame {i}: max abs diff {diff.max():.2e}, mean {diff.mean():.2e}"
        assert ov.stage_runs["face_morpher"] - face_runs < len(poses)  # idle frames reused the face
        # The cached path gives what the backend computes without the cache (OpenVINO is deterministic
        # here; allow for a different rounding should its threads split work differently).
        cached = ov.pose(poses[-1])
        ov.cache_stages = False
        assert (ov.pose(poses[-1]) - cached).abs().max() <= 1e-6
    finally:
        poser.cache_stages = True
