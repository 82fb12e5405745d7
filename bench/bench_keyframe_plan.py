"""How close the smooth stream's in-between frames are to exact renders, with every planned keyframe made:
the quality of the keyframe plan and the blend alone, independent of how fast this machine is.

    python bench/bench_keyframe_plan.py [--seconds 24] [--phase talking|idle] [--every 2] [--seed 7]

Drives the smooth source by hand (no worker threads, no clock): renders each keyframe that
talkinghead.keyframe_plan plans for the animator's motion, makes the face of every sampled frame, then
compares each sampled frame (every `--every`-th 25 FPS tick) with the exact render of its pose. PSNR on RGB
over mid-grey, 8-bit; "face" is rows 32:224, cols 160:352. Prints the figures and the worst frames; the
stream bench (bench_stream.py) measures what a viewer gets on this CPU, where keyframes may be late.
About 3 minutes for the default 24 s on 2 cores.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import FACE, over_grey, psnr  # noqa: E402
from talkinghead import backends, emotions, weights  # noqa: E402
from talkinghead.animator import Animator  # noqa: E402
from talkinghead.image import load_character  # noqa: E402
from talkinghead.smooth import SmoothSource, face_key, quantize_face  # noqa: E402
from talkinghead.tha3.poser import Poser  # noqa: E402

FPS = 25


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=24.0)
    ap.add_argument("--phase", choices=("talking", "idle"), default="talking")
    ap.add_argument("--every", type=int, default=2, help="compare every n-th frame tick")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    backends.apply_backend(poser, "auto")
    poser.set_image(load_character(weights.DEFAULT_CHARACTER.read_bytes()))
    animator = Animator(emotions.load_default_templates(), seed=args.seed, start_time=0.0)
    if args.phase == "talking":
        animator.start_talking(1.0)
    pose_at = lambda t: quantize_face(animator.pose_at(t))  # noqa: E731 - as the engine's
    source = SmoothSource(poser, pose_at, lambda: animator.generation, lambda: FPS, clock=lambda: 0.0)
    t0, t1 = 2.0, 2.0 + args.seconds

    keyframes = source.planned_keyframes(t0 - source.keyframe_interval, t1 + source.keyframe_interval)
    for t in keyframes:
        source._store(source._render_keyframe(t, pose_at(t)))
    rows = []
    for tick in range(round(t0 * FPS), round(t1 * FPS), args.every):
        t = tick / FPS
        pose = pose_at(t)
        if face_key(pose) not in source.faces:
            source._compute_face(pose)
        frame, meta = source.frame_at(t)
        exact = over_grey(poser.render(pose))
        got = over_grey(frame)
        rows.append((t, psnr(got[FACE], exact[FACE]), psnr(got, exact), meta))

    face = np.array([r[1] for r in rows])
    full = np.array([r[2] for r in rows])
    print(f"{args.phase}, {args.seconds:.0f} s, seed {args.seed}: {len(keyframes)} keyframes planned "
          f"({len(keyframes) / (args.seconds + 2 * source.keyframe_interval):.2f}/s), {len(rows)} frames compared\n")
    print("| face PSNR mean | worst | 5th percentile | frames under 35 dB | full PSNR mean | worst |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {face.mean():.2f} | {face.min():.2f} | {np.percentile(face, 5):.2f} | {int((face < 35).sum())} "
          f"| {full.mean():.2f} | {full.min():.2f} |")
    print("\nworst frames:")
    for i in np.argsort(face)[:5]:
        t, f, _, meta = rows[i]
        left, right = meta["keyframes"]
        print(f"  t = {t:6.2f} s: face {f:.1f} dB, keyframes at {left - t:+.2f} s and "
              f"{'none' if right is None else f'{right - t:+.2f} s'}, blend {meta['blend']:.2f}, "
              f"keyframe gap {meta['keyframe_gap']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
