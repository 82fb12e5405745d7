"""THA3 on CUDA: is the --talkinghead-gpu path right, and how many frames per second at 512²?

    python -m bench.bench_gpu [--frames 300] [--compile]

Checks separable_half (fp16, the GPU default) against separable_float on the CPU for a few random poses (max,
99.9th percentile and mean frame difference, each named), then times full frames (pose in, uint8 RGBA frame on
the host out) for: fp32 eager, fp16 eager, and with --compile, fp16 under torch.compile (inductor, CUDA
graphs): the first (cold) frame, the median, p95, p99 and the max. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from talkinghead import weights
from talkinghead.image import load_character
from talkinghead.tha3.poser import Poser


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


def check_half_against_cpu(models: Path, image: np.ndarray, poses: list[np.ndarray]) -> dict:
    """fp16 on CUDA vs fp32 on the CPU over `poses`: the max abs difference of the network output (-1..1), and of
    the uint8 frames the max, the 99.9th percentile and the mean difference in levels (worst pose each)."""
    cpu = Poser.load(models, "separable_float", "cpu")
    cpu.set_image(image)
    gpu = Poser.load(models, "separable_half", "cuda")
    gpu.set_image(image)
    out = {"float_max": 0.0, "level_max": 0, "level_p999": 0, "level_mean": 0.0}
    for p in poses:
        a, b = cpu.pose(p), gpu.pose(p)
        out["float_max"] = max(out["float_max"], float((a.float().cpu() - b.float().cpu()).abs().max()))
        d = np.abs(cpu.render(p).astype(int) - gpu.render(p).astype(int))
        out["level_max"] = max(out["level_max"], int(d.max()))
        out["level_p999"] = max(out["level_p999"], int(np.percentile(d, 99.9)))
        out["level_mean"] = max(out["level_mean"], float(d.mean()))
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of sorted values."""
    return sorted_values[max(0, min(len(sorted_values), int(np.ceil(q / 100 * len(sorted_values)))) - 1)]


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
    d = check_half_against_cpu(weights.MODELS_DIR, image, random_poses(5, seed=1))
    print(f"separable_half on CUDA vs separable_float on CPU, 5 random poses (worst pose each): network output max "
          f"abs {d['float_max']:.4f} (-1..1 scale); uint8 frames: max {d['level_max']} levels, 99.9th percentile "
          f"{d['level_p999']} levels, mean {d['level_mean']:.3f} levels")

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
        t0 = time.perf_counter()
        if use_compile:
            compiled(poser, use_compile)
        poser.render(poses[0])
        torch.cuda.synchronize()
        first = (time.perf_counter() - t0) * 1000  # the cold start: compiling, allocations, cuDNN autotuning
        times = sorted(time_frames(poser, poses))
        median = statistics.median(times)
        rows.append((label, first, median, 1000 / median, percentile(times, 95), percentile(times, 99),
                     times[-1], dict(poser.last_timings)))
    print(f"\n{len(poses)} timed frames per configuration after 10 warm-up frames; percentiles nearest-rank")
    print("| configuration | first frame ms (cold) | median ms/frame | FPS at the median | p95 ms | p99 ms | max ms "
          "| last frame's stages (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, first, median, fps, p95, p99, worst, stages in rows:
        stage_text = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        print(f"| {label} | {first:.0f} | {median:.2f} | {fps:.0f} | {p95:.2f} | {p99:.2f} | {worst:.2f} "
              f"| {stage_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
