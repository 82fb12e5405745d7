"""The smooth stream's composer alone: a frame from the editor's outputs and a face, and the blend of two
keyframes' outputs for a frame between them."""
from __future__ import annotations

import numpy as np
import torch

from talkinghead import pose as P
from talkinghead.smooth.compose import Blender, compose, to_rgba_uint8
from talkinghead.smooth.faces import FACE_BOX
from talkinghead.smooth.keyframes import Keyframe
from talkinghead.smooth.region import pixel_grid
from talkinghead.tha3.poser import tensor_to_rgba_uint8_tensor


def test_with_no_warp_and_no_colour_change_the_frame_is_the_image_with_the_face_pasted_in():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 4, 512, 512, generator=generator) * 2 - 1
    face = torch.rand(1, 4, 192, 192, generator=generator) * 2 - 1
    zeros = torch.zeros(1, 4, 512, 512)
    frame = compose(image, face, torch.zeros(1, 2, 512, 512), zeros, zeros)
    expected = image.clone()
    expected[(..., *FACE_BOX)] = face
    assert frame.shape == (512, 512, 4) and frame.dtype == np.uint8
    exact = tensor_to_rgba_uint8_tensor(expected).numpy()
    assert np.abs(frame.astype(int) - exact.astype(int)).max() <= 1  # sampled at pixel centres: rounding only


def test_at_a_keyframes_pose_the_composed_frame_is_the_exact_render(real_poser):
    pose = np.zeros(45, np.float32)
    pose[P.INDEX["head_y_index"]] = 0.4
    pose[P.INDEX["mouth_ooo_index"]] = 0.75
    with torch.inference_mode():
        p = torch.as_tensor(pose)[None]
        eyebrows = real_poser.morph_eyebrows(p[:, P.EYEBROW])
        face = real_poser.face_morph(p[:, P.FACE], eyebrows)[(..., *FACE_BOX)]
        image = real_poser.image.clone()
        image[(..., *FACE_BOX)] = face
        warped, grid_change = real_poser.rotate(image, p[:, P.ROTATION])
        grid, color, alpha = real_poser.edit_changes(image, warped, grid_change, p[:, P.ROTATION])
    frame = compose(real_poser.image, face, grid, color, alpha)
    assert np.abs(frame.astype(int) - real_poser.render(pose).astype(int)).max() <= 1


def keyframe(head_y: float, value: float) -> Keyframe:
    pose = np.zeros(45, np.float32)
    pose[P.INDEX["head_y_index"]] = head_y
    fill = np.full((2, 2, 4), value, np.float16)
    return Keyframe(pose, 0, np.full((2, 2, 2), value, np.float16), fill, fill)


def test_a_frame_blends_its_keyframes_outputs_by_their_weights():
    a, b, c = keyframe(0.0, 0.0), keyframe(0.4, 1.0), keyframe(0.8, 2.0)
    grid, color, alpha = Blender().outputs([(a, 0.25), (b, 0.5), (c, 0.25)])
    assert np.allclose(grid, pixel_grid(2, 2) + 1.0)  # each pixel samples one pixel right and down
    assert np.allclose(color, 1.0) and np.allclose(alpha, 1.0)
    assert color.dtype == np.float32  # blended in float32, though kept in half


def test_a_single_keyframe_is_shown_as_it_is():
    a = keyframe(0.0, 0.5)
    grid, color, alpha = Blender().outputs([(a, 1.0)])
    assert np.array_equal(grid, a.sample_map) and np.array_equal(color, a.color.astype(np.float32))


def test_a_keyframe_keeps_the_sampling_map_within_two_hundredths_of_a_pixel():
    rng = np.random.default_rng(0)
    sample_map = pixel_grid(512, 512) + rng.uniform(-60, 60, (512, 512, 2)).astype(np.float32)
    kept = Keyframe.of(np.zeros(45), 0, sample_map, np.zeros((512, 512, 4)), np.zeros((512, 512, 4)))
    assert np.abs(kept.sample_map - sample_map).max() < 0.02 and kept.nbytes == 5 * 2 ** 20


def test_the_srgb_table_is_within_one_level_of_the_exact_conversion():
    values = torch.linspace(-1.1, 1.1, 200_001)
    image = values.repeat(4, 1).reshape(4, -1, 1)  # every value in every channel
    exact = tensor_to_rgba_uint8_tensor(image).numpy()
    table = to_rgba_uint8(image.permute(1, 2, 0).numpy().copy())
    difference = np.abs(table.astype(int) - exact.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01
