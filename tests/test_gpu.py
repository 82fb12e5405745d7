"""The --talkinghead-gpu path on CUDA (`pytest -m gpu`; skips without CUDA, wherever a GPU exists it runs):
fp16 frames (separable_half, the GPU default) against fp32 frames of the same poses within a stated bound, and
the compiled path the server runs (talkinghead.backends.cuda_compile) against eager.

Bounds, on the 8-bit RGBA frames composited over mid-grey, worst of the poses:
* fp16 vs fp32 on CUDA: PSNR >= FP16_MIN_PSNR dB over the frame and the face, mean difference <= FP16_MAX_MEAN
  levels. fp16 keeps ~3 significant digits; the warps sample the image at computed coordinates, so a few
  edge pixels may move by a level or more, hence PSNR and mean rather than the max. (Not yet measured on a GPU
  by this test's author: no device was lent; bench/bench_gpu.py prints the max, 99.9th percentile and mean.)
* compiled vs eager (both fp16): PSNR >= COMPILED_MIN_PSNR dB, mean <= COMPILED_MAX_MEAN levels: the same
  arithmetic, fused (inductor may round intermediates differently, nothing more).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from talkinghead import weights

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU): run with -m gpu there")]
FP16_MIN_PSNR, FP16_MAX_MEAN = 35.0, 1.0
COMPILED_MIN_PSNR, COMPILED_MAX_MEAN = 45.0, 0.25
FACE = (slice(32, 224), slice(160, 352))


def random_poses(n: int, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        p = rng.uniform(0, 1, 45).astype(np.float32)
        p[39:44] = rng.uniform(-1, 1, 5)  # head, neck, body rotations over their whole range
        poses.append(p)
    return poses


def over_grey(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return rgba[..., :3].astype(np.float64) * a + 128.0 * (1.0 - a)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    x, y = over_grey(a), over_grey(b)

    def psnr(box):
        mse = float(np.mean((x[box] - y[box]) ** 2))
        return 99.0 if mse < 1e-10 else 10 * math.log10(255.0 ** 2 / mse)

    return {"psnr": psnr((slice(None), slice(None))), "face_psnr": psnr(FACE),
            "mean": float(np.abs(x - y).mean()), "max": float(np.abs(x - y).max())}


@pytest.fixture(scope="module")
def character(require_weights):
    from talkinghead.image import load_character

    return load_character(weights.DEFAULT_CHARACTER.read_bytes())


def cuda_poser(variant: str, character):
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, variant, "cuda")
    poser.set_image(character)
    return poser


def test_fp16_frames_match_fp32_within_the_bound(character):
    fp32, fp16 = cuda_poser("separable_float", character), cuda_poser("separable_half", character)
    worst = None
    for pose in random_poses(8):
        c = compare(fp32.render(pose), fp16.render(pose))
        worst = c if worst is None or c["psnr"] < worst["psnr"] else worst
        assert c["psnr"] >= FP16_MIN_PSNR and c["face_psnr"] >= FP16_MIN_PSNR, c
        assert c["mean"] <= FP16_MAX_MEAN, c
    print(f"fp16 vs fp32, worst pose: {worst}")


def test_the_compiled_path_matches_eager(character):
    from talkinghead.backends.cuda_compile import compile_for_cuda

    eager, compiled = cuda_poser("separable_half", character), cuda_poser("separable_half", character)
    compile_for_cuda(compiled, warm_pose=np.zeros(45, np.float32))  # as the server does at start
    worst = None
    for pose in random_poses(8, seed=11):
        c = compare(eager.render(pose), compiled.render(pose))
        worst = c if worst is None or c["psnr"] < worst["psnr"] else worst
        assert c["psnr"] >= COMPILED_MIN_PSNR and c["mean"] <= COMPILED_MAX_MEAN, c
    print(f"compiled vs eager, worst pose: {worst}")
