"""How close the CPU stream's frames are to exact renders of their own poses, by phase: idle (from a cold start,
nothing stored), talking, face capture (head steps and a continuous turn), and within a second of the head
coming to rest.

    python -m bench.bench_pose_quality [--idle 60] [--talking 30] [--steps 10] [--hold 2.5] [--turn 10]
                                       [--every 5] [--seed 7]

The real engine (smooth mode, as the server runs it on a CPU) in this process; frames are read from the slot
viewers read (every frame is the one a viewer is sent), every n-th kept with its pose, and afterwards the exact
frame of each kept pose is rendered with the same poser. PSNR on RGB over mid-grey, 8-bit; "face" is rows
32:224, cols 160:352 (the head box). Capture is a synthetic source fed at 30 Hz as the puppeteer feeds the
engine (head_y = ±0.8 steps with the body following by half, as a ±8° yaw maps; then yaw ±8° and roll ±5° on
sines); a step's latency is from
the capture update to the first frame whose head box is closer to the exact render of the new pose than of
the old one. HTTP figures for the same stream: bench_pose_stream.py and bench_mocap.py.
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.bench_stream import new_frames, over_grey, psnr
from talkinghead import pose as P
from talkinghead import smooth, weights
from talkinghead.engine import TalkingHead
from talkinghead.image import load_character
from talkinghead.tha3.poser import Poser

FACE = (slice(32, 224), slice(160, 352))
HEAD_Y, NECK_Z, BODY_Y, BODY_Z = (P.INDEX[n] for n in ("head_y_index", "neck_z_index", "body_y_index",
                                                         "body_z_index"))


class Capture:
    """A pose override like the puppeteer's: the latest capture pose, published 30 times a second."""

    def __init__(self, clock=time.monotonic):
        self.generation = 0
        self.on_change = lambda: None  # the engine's, once connected
        self.values = np.zeros(45, np.float32)
        self.published: list[tuple[float, np.ndarray]] = []
        self._clock = clock

    def connect(self, on_change, ramp) -> None:
        self.on_change = on_change

    def override_at(self, t: float):
        return self.values, 1.0

    def publish(self, values: np.ndarray) -> None:
        self.values = np.asarray(values, np.float32)
        self.generation += 1
        self.published.append((self._clock(), self.values.copy()))
        self.on_change()

    def feed(self, seconds: float, values_at) -> float:
        start = time.monotonic()
        n = 0
        while (t := time.monotonic() - start) < seconds:
            self.publish(values_at(t))
            n += 1
            time.sleep(max(0.0, start + n / 30 - time.monotonic()))
        return start


class Recorder:
    """Every frame published to the slot, from a viewer's thread: (arrival, frame time, seq); every n-th
    kept with its pose and pixels."""

    def __init__(self, engine: TalkingHead, every: int):
        self.engine, self.every = engine, every
        self.frames, self.kept = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        for frame in new_frames(self.engine.slot, self._stop):
            now = time.monotonic()
            self.frames.append((now, frame))
            if len(self.frames) % self.every == 0:
                self.kept.append((now, frame.rgba, dict(frame.meta)))

    def between(self, t0: float, t1: float):
        return [(t, f) for t, f in self.frames if t0 <= t < t1]

    def kept_between(self, t0: float, t1: float):
        return [k for k in self.kept if t0 <= k[0] < t1]

    def close(self):
        self._stop.set()
        self._thread.join()


def quality(poser: Poser, kept, save: Path | None = None, name: str = "") -> tuple[float, float, int]:
    """Face PSNR of the kept frames against exact renders of their poses: mean, worst, count. save: write the
    worst frame beside its exact render there (PNG)."""
    exact = [poser.render(meta["pose"]) for _, _, meta in kept]
    faces = [psnr(over_grey(rgba)[FACE], over_grey(e)[FACE]) for (_, rgba, _), e in zip(kept, exact)]
    if not faces:
        return float("nan"), float("nan"), 0
    if save is not None:
        from PIL import Image
        worst = int(np.argmin(faces))
        pair = np.concatenate([kept[worst][1], exact[worst]], axis=1)
        Image.fromarray(pair).save(save / f"worst-{name.split(':')[0].split(',')[0].replace(' ', '-')}.png")
        print(f"  worst {name}: {faces[worst]:.1f} dB, blend {kept[worst][2].get('blend')}, "
              f"error {kept[worst][2].get('blend_error')}")
    return statistics.mean(faces), min(faces), len(faces)


def distinct_per_second(recorder: Recorder, t0: float, t1: float) -> float:
    frames = recorder.between(t0, t1)
    distinct = sum(1 for (_, a), (_, b) in zip(frames, frames[1:]) if not np.array_equal(a.rgba, b.rgba))
    return distinct / (t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--talking", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--hold", type=float, default=2.5)
    ap.add_argument("--turn", type=float, default=10.0)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--save", default=None, help="folder for each phase's worst frame beside its exact render")
    a = ap.parse_args()

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    smooth.apply_backend(poser, "auto")
    character = load_character(weights.DEFAULT_CHARACTER.read_bytes())
    # Keyframes kept on disk as the server keeps them (a fresh folder: nothing stored at the start).
    disk = smooth.KeyframeDisk(tempfile.mkdtemp(prefix="bench-keyframes-"), model="separable_float/auto")
    engine = TalkingHead(poser, smooth=True, seed=a.seed, keyframe_disk=disk)
    engine.start(character)
    recorder = Recorder(engine, a.every)
    rows = []
    try:
        t0 = time.monotonic()
        time.sleep(a.idle)
        t1 = time.monotonic()
        half = t0 + a.idle / 2
        rows.append(("idle, first half (cold: nothing stored)", t0, half))
        rows.append(("idle, second half", half, t1))
        engine.start_talking()
        time.sleep(a.talking)
        t2 = time.monotonic()
        engine.stop_talking()
        rows.append(("talking", t1, t2))

        capture = Capture()
        engine.set_pose_override(capture)
        rest = np.zeros(45, np.float32)

        def head(y: float, z: float = 0.0) -> np.ndarray:
            """A yaw and roll as the puppeteer maps them: the body follows the head by half."""
            p = rest.copy()
            p[HEAD_Y], p[NECK_Z], p[BODY_Y], p[BODY_Z] = y, z, y / 2, z / 2
            return p

        capture.feed(a.hold, lambda t: head(-0.8))
        steps, y = [], -0.8
        for _ in range(a.steps):
            y = -y
            started = capture.feed(a.hold, lambda t, y=y: head(y))
            steps.append((started, y))
        t3 = time.monotonic()
        rows.append(("capture: head steps ±0.8 head_y", steps[0][0], t3))
        turn = capture.feed(a.turn, lambda t: head(0.8 * math.sin(2 * math.pi * 0.5 * t),
                                                     0.33 * math.sin(2 * math.pi * 0.35 * t)))
        t4 = time.monotonic()
        if a.turn > 10.0:  # how the store catches up with a motion it has not seen: the first 10 s, the rest
            rows.append(("capture: continuous turn, first 10 s", turn, turn + 10.0))
            rows.append((f"capture: continuous turn, {10:g}-{a.turn:g} s", turn + 10.0, t4))
        else:
            rows.append(("capture: continuous turn", turn, t4))
        capture.feed(2.0, lambda t: head(0.5, 0.2))  # the head comes to rest
        t5 = time.monotonic()
        rows.append(("capture: 1-2 s after coming to rest", t4 + 1.0, t5))
        engine.set_pose_override(None)
    finally:
        recorder.close()
        stats = engine.stats()
        engine.close()
        shutil.rmtree(disk.directory, ignore_errors=True)

    exact = {y: over_grey(poser.render(head(y)))[FACE] for y in (-0.8, 0.8)}  # breathing 0: the head box
    latencies = []
    for started, y in steps:
        new, old = exact[y], exact[-y]
        for when, frame in recorder.between(started, started + a.hold):
            box = over_grey(frame.rgba)[FACE]
            if np.mean((box - new) ** 2) < np.mean((box - old) ** 2):
                latencies.append(when - started)
                break
        else:
            latencies.append(float("inf"))

    print(f"# bench_pose_quality: real engine in process (smooth, {stats.get('mode')}), seed {a.seed}, "
          f"every {a.every}th frame compared with the exact render of its pose")
    print("| phase | face mean dB | face worst dB | frames compared | distinct frames/s |")
    print("|---|---|---|---|---|")
    for name, start, end in rows:
        mean, worst, n = quality(poser, recorder.kept_between(start, end), Path(a.save) if a.save else None, name)
        print(f"| {name} | {mean:.1f} | {worst:.1f} | {n} | {distinct_per_second(recorder, start, end):.1f} |")
    finite = [x for x in latencies if math.isfinite(x)]
    print(f"\n| head step: first frame closer to the new pose than the old (head box) | median "
          f"{1000 * statistics.median(latencies):.0f} ms, first {1000 * latencies[0]:.0f} ms, worst "
          f"{1000 * max(latencies):.0f} ms, {len(finite)} of {len(latencies)} steps |")
    print(f"| keyframes | {stats['keyframes']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
