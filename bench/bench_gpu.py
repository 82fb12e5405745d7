"""THA3 on CUDA: is the --talkinghead-gpu path right, and how many frames per second at 512²?

    python bench/bench_gpu.py [--frames 300] [--compile]

Checks separable_half (fp16, the GPU default) against separable_float on the CPU for a few random poses, then
times full frames (pose in, uint8 RGBA frame on the host out) for: fp32 eager, fp16 eager, and with
--compile, fp16 under torch.compile (inductor, CUDA graphs). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from talkinghead import weights  # noqa: E402
from talkinghead.image import load_character  # noqa: E402
from talkinghead.tha3.poser import Poser  # noqa: E402


def random_poses(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        p = rng.uniform(0, 1, 45).astype(np.float32)
        p[39:44] = rng.uniform(-1, 1, 5)
        poses.append(p)
    return poses


def time_frames(poser: Poser, poses: list[np.ndarray], warmup: int = 10) -> list[float]:
    for p in poses[:warmup]:
        poser.render(p)
    times = []
    for p in poses:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        poser.render(p)  # includes the host copy of the uint8 frame
        times.append((time.perf_counter() - t0) * 1000)
    return times


def check_half_against_cpu(models: Path, image: np.ndarray, poses: list[np.ndarray]) -> tuple[float, int]:
    cpu = Poser.load(models, "separable_float", "cpu")
    cpu.set_image(image)
    gpu = Poser.load(models, "separable_half", "cuda")
    gpu.set_image(image)
    worst_float, worst_level = 0.0, 0
    for p in poses:
        a, b = cpu.pose(p), gpu.pose(p)
        worst_float = max(worst_float, float((a - b).abs().max()))
        fa, fb = cpu.render(p).astype(int), gpu.render(p).astype(int)
        worst_level = max(worst_level, int(np.percentile(np.abs(fa - fb), 99.9)))
    return worst_float, worst_level


def compiled(poser: Poser, mode: str) -> Poser:
    for name, net in list(poser.networks.items()):
        if name != "eyebrow_decomposer":
            poser.networks[name] = torch.compile(net, mode=mode)
    return poser


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__}")
    image = load_character(weights.DEFAULT_CHARACTER.read_bytes())
    worst_float, worst_level = check_half_against_cpu(weights.MODELS_DIR, image, random_poses(5, seed=1))
    print(f"separable_half on CUDA vs separable_float on CPU, 5 random poses: max abs {worst_float:.4f} "
          f"(-1..1 scale), 99.9th percentile uint8 difference {worst_level} levels")

    rows = []
    poses = random_poses(args.frames)
    configs = [("separable_float", "eager fp32", None), ("separable_half", "eager fp16", None)]
    if args.compile:
        configs += [("separable_half", "torch.compile fp16, no CUDA graphs (the server's)",
                     "default"),
                    ("separable_half", "torch.compile fp16, CUDA graphs", "reduce-overhead")]
    for variant, label, use_compile in configs:
        poser = Poser.load(weights.MODELS_DIR, variant, "cuda")
        poser.set_image(image)
        if use_compile:
            t0 = time.perf_counter()
            compiled(poser, use_compile)
            for p in poses[:3]:
                poser.render(p)
            print(f"compile + first frames: {time.perf_counter() - t0:.1f} s")
        times = time_frames(poser, poses)
        median = statistics.median(times)
        rows.append((label, median, 1000 / median, sorted(times)[int(0.95 * len(times))],
                     dict(poser.last_timings)))
    print("\n| configuration | median ms/frame | FPS | p95 ms | last frame's stages (ms) |")
    print("|---|---:|---:|---:|---|")
    for label, median, fps, p95, stages in rows:
        stage_text = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        print(f"| {label} | {median:.2f} | {fps:.0f} | {p95:.2f} | {stage_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
