"""The stream as viewers receive it over HTTP from a real server process: distinct frames per second per viewer
(1 and 20 PNG viewers), the longest waits between them, the cold start, the server's CPU with one viewer and with
none, idle and talking.

    python -m bench.bench_delivery [--seconds 20] [--warmup 30] [--viewers 20] [--port 0]
                                   [--visible-levels 8] [--visible-pixels 20] [-- SERVER ARGS]

Starts `server.py --enable-modules=talkinghead` (the README's server, on the CPU in smooth mode), waits for it,
then measures with viewers that read `result_feed` as a browser would (parts split on the boundary, every
part's bytes hashed: a part identical to the one before is a repeat, not a new frame). The first viewer also
decodes every part: a frame is *visible* when at least --visible-pixels of its pixels differ from the frame
received before it by more than --visible-levels (of 255, any channel), so a change nobody can see (a lattice
step of the face, a re-encode) does not count. Gaps are between consecutive distinct (visible) frames of a
viewer within the row's interval: a mean hides a freeze, p99 and max do not. Cold start: server process
start to ready, and the first viewer's request to its first frame and to its first visible change. CPU is
the server process's user + system time from /proc over the interval, in cores. The quality of the frames
(PSNR against the exact render of their pose) needs each frame's pose: bench_stream.py measures it.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench.common import free_port, stop_process
from talkinghead.stream import PartReader

ROOT = Path(__file__).resolve().parent.parent


class Viewer(threading.Thread):
    """One result_feed reader: the arrival time and hash of every part, and what `inspect` makes of its
    bytes (when given)."""

    def __init__(self, url: str, inspect=None):
        super().__init__(daemon=True)
        self.url = url
        self.inspect = inspect
        self.parts: list[tuple[float, bytes, object]] = []
        self._response = None
        self._done = threading.Event()

    def run(self):
        self._response = requests.get(self.url, stream=True, timeout=60)
        reader = PartReader(self._response.iter_content(chunk_size=None))
        try:
            while not self._done.is_set():
                got = reader.read(1)
                if not got:
                    return
                data = got[0][1]
                self.parts.append((time.monotonic(), hashlib.blake2b(data, digest_size=8).digest(),
                                   self.inspect(data) if self.inspect else None))
        except (requests.RequestException, AttributeError, ValueError):
            return

    def close(self):
        self._done.set()
        if self._response is not None:
            self._response.close()
        self.join(timeout=5)

    def rates(self, t0: float, t1: float) -> tuple[float, float]:
        """(parts/s, distinct frames/s) received in [t0, t1)."""
        hashes = [h for t, h, _ in self.parts if t0 <= t < t1]
        distinct = sum(1 for a, b in zip([None] + hashes, hashes) if a != b)
        return len(hashes) / (t1 - t0), distinct / (t1 - t0)

    def distinct_times(self, t0: float, t1: float, visible: bool = False) -> list[float]:
        """Arrival times in [t0, t1) of the parts that differ from the part before (`visible`: visibly, as
        VisibleChange judged them; needs the viewer made with inspect=VisibleChange(...))."""
        times, before = [], None
        for t, h, changed in self.parts:
            new = bool(changed) if visible else h != before
            before = h
            if new and t0 <= t < t1:
                times.append(t)
        return times


class VisibleChange:
    """An `inspect` for Viewer: True when the part's frame visibly differs from the part received before it
    (at least `pixels` pixels differ by more than `levels` in some channel)."""

    def __init__(self, levels: int = 8, pixels: int = 20):
        self.levels, self.pixels, self._before = levels, pixels, None

    def __call__(self, data: bytes) -> bool:
        frame = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), np.int16)
        before, self._before = self._before, frame
        if before is None:
            return True
        return int((np.abs(frame - before).max(axis=2) > self.levels).sum()) >= self.pixels


def gap_figures(times: list[float], t0: float, t1: float) -> dict:
    """Waits between consecutive frames at `times` (and from t0 to the first, from the last to t1), in ms:
    mean, p99 (the nearest-rank 99th percentile) and max; a freeze shows in max whatever the mean."""
    edges = [t0, *times, t1]
    gaps = sorted(1000 * (b - a) for a, b in zip(edges, edges[1:]))
    p99 = gaps[max(0, math.ceil(0.99 * len(gaps)) - 1)]
    return {"mean": sum(gaps) / len(gaps), "p99": p99, "max": gaps[-1]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """server.py in its own process, on a loopback port, ready when constructed."""

    def __init__(self, port: int, extra: list[str], modules: str = "talkinghead"):
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "server.py", f"--enable-modules={modules}", "--port",
                                         str(port), *extra], cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(self.base + "/api/modules", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.5)

    def get(self, path: str):
        return requests.get(self.base + path, timeout=10)

    def post(self, path: str, **kwargs):
        return requests.post(self.base + path, timeout=30, **kwargs)

    def close(self):
        stop_process(self.process)


def measure(server: Server, viewers: list[Viewer], seconds: float) -> dict:
    """Over `seconds`: each viewer's parts/s and distinct frames/s, the server's cores and render FPS."""
    by_thread0 = server.get("/api/talkinghead/stats").json()["cpu_seconds"]
    cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(server.process.pid), time.monotonic()
    stats = server.get("/api/talkinghead/stats").json()
    rates = [v.rates(t0, t1) for v in viewers]
    by_thread = {k: (v - by_thread0.get(k, 0.0)) / (t1 - t0) for k, v in stats["cpu_seconds"].items()}
    gaps = [gap_figures(v.distinct_times(t0, t1), t0, t1) for v in viewers]
    visible = None
    if viewers and isinstance(viewers[0].inspect, VisibleChange):
        times = viewers[0].distinct_times(t0, t1, visible=True)
        visible = {"fps": len(times) / (t1 - t0), **gap_figures(times, t0, t1)}
    return {"cores": (cpu1 - cpu0) / (t1 - t0), "render_fps": stats["render_fps"], "by_thread": by_thread,
            "parts": [p for p, _ in rates], "distinct": [d for _, d in rates], "gaps": gaps, "visible": visible}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    ap.add_argument("--warmup", type=float, default=30.0, help="one viewer watches this long before measuring")
    ap.add_argument("--viewers", type=int, default=20, help="viewers in the many-viewers row")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--visible-levels", type=int, default=8, help="a pixel changed: by more than this (of 255)")
    ap.add_argument("--visible-pixels", type=int, default=20, help="a frame visibly new: this many pixels changed")
    ap.add_argument("server_args", nargs="*", help="more server.py arguments (after --)")
    args = ap.parse_args()

    started = time.monotonic()
    server = Server(args.port or free_port(), args.server_args)
    ready_s = time.monotonic() - started
    feed = server.base + "/api/talkinghead/result_feed"
    rows = []
    try:
        one = Viewer(feed, inspect=VisibleChange(args.visible_levels, args.visible_pixels))
        asked = time.monotonic()
        one.start()
        time.sleep(args.warmup)
        visible_after = one.distinct_times(asked, math.inf, visible=True)
        cold = {"ready": ready_s, "first": one.parts[0][0] - asked if one.parts else math.inf,
                "moving": visible_after[1] - asked if len(visible_after) > 1 else math.inf}
        rows.append(("1 viewer, idle", measure(server, [one], args.seconds)))
        server.get("/api/talkinghead/start_talking")
        time.sleep(1)
        rows.append(("1 viewer, talking", measure(server, [one], args.seconds)))
        server.get("/api/talkinghead/stop_talking")
        many = [Viewer(feed) for _ in range(args.viewers - 1)]
        for v in many:
            v.start()
        time.sleep(3)
        rows.append((f"{args.viewers} viewers, idle", measure(server, [one, *many], args.seconds)))
        for v in [one, *many]:
            v.close()
        time.sleep(10)
        rows.append(("no viewer (10 s after the last left)", measure(server, [], args.seconds)))
        stats = server.get("/api/talkinghead/stats").json()
    finally:
        server.close()

    print(f"server.py --enable-modules=talkinghead {' '.join(args.server_args)} on {os.cpu_count()} cores; "
          f"{args.warmup:.0f} s warm-up, {args.seconds:.0f} s per row; state at the end: {stats['state']}; "
          f"visible: >= {args.visible_pixels} pixels changed by > {args.visible_levels} levels\n")
    print(f"| cold start | ms |\n|---|---:|\n| server process start → ready (/api/modules answers) | "
          f"{cold['ready'] * 1000:.0f} |\n| first viewer's request → its first frame | {cold['first'] * 1000:.0f} |\n"
          f"| first viewer's request → its first visible change (motion) | {cold['moving'] * 1000:.0f} |\n")
    print("| over HTTP | distinct frames/s per viewer (min / mean) | gap between distinct frames, worst viewer "
          "(ms): mean / p99 / max | viewer 1: visible frames/s; gap mean / p99 / max (ms) | parts/s per viewer "
          "| server CPU (cores) | render FPS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, m in rows:
        d, p = m["distinct"], m["parts"]
        per_viewer = f"{min(d):.1f} / {sum(d) / len(d):.1f}" if d else "–"
        parts = f"{sum(p) / len(p):.1f}" if p else "–"
        worst = max(m["gaps"], key=lambda g: g["max"]) if m["gaps"] else None
        gaps = f"{worst['mean']:.0f} / {worst['p99']:.0f} / {worst['max']:.0f}" if worst else "–"
        v = m["visible"]
        visible = f"{v['fps']:.1f}; {v['mean']:.0f} / {v['p99']:.0f} / {v['max']:.0f}" if v else "–"
        print(f"| {label} | {per_viewer} | {gaps} | {visible} | {parts} | {m['cores']:.2f} | {m['render_fps']} |")
    groups = sorted({g for _, m in rows for g in m["by_thread"]})
    print("\n| server CPU by thread (cores) | " + " | ".join(groups) + " |")
    print("|---|" + "---:|" * len(groups))
    for label, m in rows:
        print(f"| {label} | " + " | ".join(f"{m['by_thread'].get(g, 0.0):.2f}" for g in groups) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
