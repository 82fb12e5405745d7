"""The puppeteer as a user sees it, on this CPU: the real server in smooth mode driven by VMC head turns.

    python -m bench.bench_mocap [--source vmc|ifacialmocap] [--steps 10] [--hold 2.5] [--continuous 10]
                                [--port 5197] [--vmc-port 39597]

Starts `server.py --enable-modules=talkinghead --talkinghead-mocap vmc:PORT` (or `ifacialmocap`: the phone's
text packets on UDP 49983), keeps one result_feed viewer (JPEG) open the whole time (the server stops
rendering 5 s after the last viewer leaves) and sends the head's rotation at 30 Hz:
* steps: the head holds one yaw for --hold s, then jumps to the other (±8°, head_y ∓0.8; still sent at 30
  Hz); latency = from the first packet of the new yaw to the first frame received that is (a) visibly
  moving (10 % of the way from the old steady frame to the new one) and (b) halfway there (50 %), and (c)
  within 10 % of the new steady frame;
* continuous: a sinusoidal head turn (yaw ±8°, 0.5 Hz; roll ±5°, 0.35 Hz) for --continuous s: distinct
  frames/s received and how often a frame differs from the one before.
Frames are compared as 128×128 greys (mean absolute difference) in the head box (the face morpher's crop:
rows 32:224, cols 160:352 of the 512×512 frame), so a steady frame of the new pose stands for its exact
render (the stream shows a resting pose from a keyframe at it).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench.bench_delivery import Server
from bench.common import keyframe_folder
from talkinghead.stream import PartReader
from tests.network import vmc_head_bundle

ROOT = Path(__file__).resolve().parent.parent


class Viewer:
    """Reads result_feed on a thread: (arrival time, 128×128 grey) of every frame."""

    def __init__(self, url: str):
        self.frames: list[tuple[float, np.ndarray]] = []
        self._response = requests.get(url, stream=True, timeout=30)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        reader = PartReader(self._response.iter_content(chunk_size=None))
        while not self._stop:
            try:
                parts = reader.read(1)
            except Exception:  # closed under us at the end
                return
            if not parts:
                return
            now = time.monotonic()
            grey = np.asarray(Image.open(io.BytesIO(parts[0][1])).convert("L").resize((128, 128)), np.float32)
            self.frames.append((now, grey))

    def close(self):
        self._stop = True
        self._response.close()


HEAD_BOX = (slice(8, 56), slice(40, 88))  # rows 32:224, cols 160:352 of 512, on the 128×128 grey


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a[HEAD_BOX] - b[HEAD_BOX])))


def ifacialmocap_packet(yaw: float, roll: float = 0.0) -> bytes:
    """An iFacialMocap (v1) packet: no blendshapes, the head turned (pitch, yaw, roll in degrees)."""
    return f"=head#0.0000,{yaw:.4f},{roll:.4f},0.0000,0.0000,0.0000|rightEye#0.0,0.0,0.0|leftEye#0.0,0.0,0.0|".encode()


def send_for(sock, address, seconds: float, yaw_at, roll_at=lambda t: 0.0, packet=vmc_head_bundle) -> float:
    """Send at 30 Hz for `seconds`; returns the time of the first packet."""
    start = time.monotonic()
    n = 0
    while True:
        t = time.monotonic() - start
        if t >= seconds:
            return start
        sock.sendto(packet(yaw_at(t), roll_at(t)), address)
        n += 1
        time.sleep(max(0.0, start + n / 30 - time.monotonic()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=("vmc", "ifacialmocap"), default="vmc")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--keyframes", default=None, metavar="DIR",
                    help="the server's keyframe folder (default: a new empty one: a cold start, nothing stored)")
    ap.add_argument("--hold", type=float, default=2.5)
    ap.add_argument("--continuous", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=5197)
    ap.add_argument("--vmc-port", type=int, default=39597)
    a = ap.parse_args()
    with keyframe_folder(a.keyframes, "bench-mocap-keyframes-") as folder:
        return measure(a, folder)


def measure(a: argparse.Namespace, folder: Path) -> int:
    try:
        spec = f"vmc:{a.vmc_port}" if a.source == "vmc" else "ifacialmocap"
        server = Server(a.port, ["--talkinghead-mocap", spec, "--talkinghead-keyframes", str(folder)])
    except SystemExit:
        print("server did not start", file=sys.stderr)
        return 1
    base = server.base
    try:
        viewer = Viewer(f"{base}/api/talkinghead/result_feed?format=jpeg&bg=808080")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        address = ("127.0.0.1", a.vmc_port if a.source == "vmc" else 49983)
        packet = vmc_head_bundle if a.source == "vmc" else ifacialmocap_packet
        send = lambda seconds, yaw_at, roll_at=lambda t: 0.0: send_for(  # noqa: E731
            sock, address, seconds, yaw_at, roll_at, packet)

        # Steps: hold, jump, hold.
        send(a.hold + 1.0, lambda t: -8.0)  # settle (ease-in, first keyframes)
        marks = []
        yaw = -8.0
        for _ in range(a.steps):
            yaw = -yaw
            marks.append(send(a.hold, lambda t, y=yaw: y))
        end_steps = time.monotonic()
        stats_steps = requests.get(f"{base}/api/talkinghead/mocap", timeout=5).json()

        # Continuous motion.
        before = len(viewer.frames)
        t0 = send(a.continuous, lambda t: 8.0 * math.sin(2 * math.pi * 0.5 * t),
                      lambda t: 5.0 * math.sin(2 * math.pi * 0.35 * t))
        t1 = time.monotonic()
        stats = requests.get(f"{base}/api/talkinghead/stats", timeout=5).json()
        mocap = requests.get(f"{base}/api/talkinghead/mocap", timeout=5).json()
        frames = list(viewer.frames)
        viewer.close()
    finally:
        server.close()

    def steady(t: float) -> np.ndarray:
        """The last frame received before t (the end of a hold)."""
        return [g for when, g in frames if when <= t][-1]

    moving, halfway, arrived = [], [], []
    ends = marks[1:] + [end_steps]
    for start, end in zip(marks, ends):
        old, new = steady(start), steady(end)
        span = diff(old, new)
        if span < 1.0:
            continue
        after = [(when, g) for when, g in frames if start <= when < end]
        for bucket, done in ((moving, lambda g: diff(g, old) >= 0.1 * span),
                             (halfway, lambda g: diff(g, old) >= 0.5 * span),
                             (arrived, lambda g: diff(g, new) <= 0.1 * span)):
            first = next((when for when, g in after if done(g)), None)
            if first is not None:
                bucket.append(first - start)

    window = [(when, g) for when, g in frames if t0 + 1.0 <= when < t1]  # past the first second
    changed = sum(1 for (_, g0), (_, g1) in zip(window, window[1:]) if diff(g0, g1) > 0.05)
    seconds = max(window[-1][0] - window[0][0], 1e-3) if len(window) > 1 else 1.0

    def ms(values):
        if not values:
            return "–"
        return f"{1000 * statistics.median(values):.0f} (min {1000 * min(values):.0f}, max {1000 * max(values):.0f})"

    print(f"# bench_mocap: real server, smooth mode, {os.cpu_count()} CPUs, {stats.get('backend')} backend; "
          f"{'VMC head bone' if a.source == 'vmc' else 'iFacialMocap head'} at 30 Hz, one JPEG viewer")
    print("| measure | value |")
    print("|---|---|")
    print(f"| head step ±8° yaw: first frame moving (10 %), ms median | {ms(moving)} |")
    print(f"| head step: first try (the first step to a pose not seen before) | "
          f"{'–' if not halfway else f'{1000 * halfway[0]:.0f} ms'} |")
    print(f"| head step: first frame halfway (50 %), ms median | {ms(halfway)} |")
    print(f"| head step: first frame within 10 % of the new pose, ms median | {ms(arrived)} |")
    print(f"| steps measured | {len(halfway)} of {len(marks)} |")
    print(f"| continuous turn: frames received / s | {len(window) / seconds:.1f} |")
    print(f"| continuous turn: distinct frames / s (differ from the previous) | {changed / seconds:.1f} |")
    print(f"| continuous turn: pose publications (events) / s | "
          f"{(mocap['published'] - stats_steps['published']) / (t1 - t0):.1f} |")
    print(f"| packets / dropped (whole run) | {mocap['packets']} / {mocap['dropped']} |")
    print(f"| keyframes rendered, last keyframe ms | {stats.get('keyframes_rendered')}, {stats.get('keyframe_ms')} |")
    print(f"| keyframes stored (from disk) | {stats.get('keyframes', {}).get('stored')} "
          f"({stats.get('keyframes', {}).get('loaded_from_disk')}) |")
    print(f"| frames received in all | {len(frames)} (before the continuous part: {before}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
