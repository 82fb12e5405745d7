"""A character's region: keyframes keep their outputs only where the character can show, frames are computed
only there, and everywhere else the frame is transparent — exactly as the networks' own render is."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead import pose as P
from talkinghead.smooth import KeyframeDisk, SmoothSource, quantize_face
from talkinghead.smooth.faces import FACE_BOX
from talkinghead.smooth.region import Region


def rotated(**values: float) -> np.ndarray:
    pose = np.zeros(45, np.float32)
    for name, value in values.items():
        pose[P.INDEX[f"{name}_index"]] = value
    return quantize_face(pose)


def test_the_region_is_the_images_tiles_one_tile_around_them_and_the_face_box(character_rgba):
    region = Region.of(character_rgba)
    inside = region.unpack(np.ones((region.rows, 512, 1), np.uint8))[..., 0].astype(bool)
    shown = character_rgba[..., 3] > 0
    assert inside[shown].all() and inside[FACE_BOX].all()
    assert 0.4 < region.fraction < 0.7  # lambda_00 fills 29 % of its picture
    near = np.zeros_like(shown)  # every pixel within 32 px of the character's
    for y, x in zip(*np.nonzero(shown[::8, ::8])):
        near[max(0, 8 * y - 32):8 * y + 40, max(0, 8 * x - 32):8 * x + 40] = True
    assert inside[near].all()


def test_packing_keeps_the_regions_pixels_and_unpacking_leaves_the_rest_zero(character_rgba):
    region = Region.of(character_rgba)
    image = np.random.default_rng(0).integers(1, 255, (512, 512, 4), dtype=np.uint8)
    packed = region.pack(image)
    assert packed.shape == (region.rows, 512, 4)
    back = region.unpack(packed)
    inside = back.any(axis=-1)
    assert np.array_equal(back[inside], image[inside]) and inside.mean() == pytest.approx(region.fraction)


def test_an_opaque_picture_keeps_the_whole_frame():
    opaque = np.full((512, 512, 4), 255, np.uint8)
    region = Region.of(opaque)
    assert region.is_whole and region.pack(opaque) is opaque


@pytest.mark.slow
def test_frames_at_keyframes_poses_are_exact_over_the_whole_frame_from_a_region(real_poser):
    """Keyframes made for the character keep only its region (about half the memory); at their poses the
    frame equals the networks' render everywhere, the transparent rest included."""
    state = {"pose": rotated()}
    source = SmoothSource(real_poser, lambda t: state["pose"], lambda: 0, lambda: 25.0, lambda: 100.0)
    source.image_changed()
    for pose in (rotated(head_y=0.6, body_z=0.2), rotated(neck_z=-0.2, body_y=-0.6, head_x=0.3)):
        keyframe = source._make_keyframe(pose)
        assert keyframe.region is not None and keyframe.nbytes < 3 * 2 ** 20  # 5 MB for the whole frame
        state["pose"] = pose
        frame, meta = source.frame_at(100.0)
        assert meta["blend"] == [1.0]
        assert np.abs(frame.astype(int) - real_poser.render(pose).astype(int)).max() <= 1


@pytest.mark.slow
def test_a_frame_between_keyframes_shows_nothing_where_the_character_cannot_be(real_poser, character_rgba):
    """Blended in the background, two keyframes' colour changes leave faint shapes where neither keyframe
    shows anything (alpha up to 64 of 255 between a resting and a turned neck, up to 120 far from the
    character); outside the region the frame is clear, as the exact render is. (Near the character they remain:
    the blend's own error.)"""
    state = {"pose": rotated()}
    source = SmoothSource(real_poser, lambda t: state["pose"], lambda: 0, lambda: 25.0, lambda: 100.0)
    source.image_changed()
    source._make_keyframe(rotated())
    source._make_keyframe(rotated(neck_z=0.2))
    state["pose"] = rotated(neck_z=0.1)
    frame, meta = source.frame_at(100.0)
    assert sorted(meta["blend"]) == pytest.approx([0.5, 0.5], abs=0.01)
    region = Region.of(character_rgba)
    outside = ~region.unpack(np.ones((region.rows, 512, 1), bool))[..., 0]
    assert not frame[outside].any()


def test_a_keyframe_kept_in_a_region_comes_back_with_it_and_a_bad_region_is_refused(tmp_path, character_rgba,
                                                                                   caplog):
    region = Region.of(character_rgba)
    rng = np.random.default_rng(0)
    saved = tuple(rng.uniform(-1, 1, (region.rows, 512, c)).astype(np.float16) for c in (2, 4, 4))
    disk = KeyframeDisk(tmp_path, model="m")
    disk.save("abc", 1, rotated(head_y=0.3), saved, region)
    (pose, (offset, color, alpha, kept_region)), = list(disk.load("abc"))
    assert kept_region == region and all(np.array_equal(a, b) for a, b in zip((offset, color, alpha), saved))

    bad = Region(((0, 32, 0, 64), (0, 32, 64, 128)))  # overlapping rows: not a region Region.of makes
    disk.save("abc", 2, rotated(head_y=0.5), tuple(a[:bad.rows] for a in saved), bad)
    assert len(list(disk.load("abc"))) == 1 and "ignored 1 keyframe file" in caplog.text
