"""The stream as viewers receive it over HTTP from a real server process: distinct frames per second per viewer
(1 and 20 PNG viewers), the server's CPU with one viewer and with none, idle and talking.

    python bench/bench_delivery.py [--seconds 20] [--warmup 30] [--viewers 20] [--port 0] [-- SERVER ARGS]

Starts `server.py --enable-modules=talkinghead` (the README's server, on the CPU in smooth mode), waits for it,
then measures with viewers that read `result_feed` as a browser would (parts split on the boundary, every
part's bytes hashed: a part identical to the one before is a repeat, not a new frame). CPU is the server
process's user + system time from /proc over the interval, in cores. The quality of the frames (PSNR against
the exact render of their pose) needs each frame's pose: bench_stream.py measures it in process.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from talkinghead.stream import PartReader  # noqa: E402


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
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def measure(server: Server, viewers: list[Viewer], seconds: float) -> dict:
    """Over `seconds`: each viewer's parts/s and distinct frames/s, the server's cores and render FPS."""
    by_thread0 = server.get("/api/talkinghead/stats").json()["cpu_seconds"]
    cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(server.process.pid), time.monotonic()
    stats = server.get("/api/talkinghead/stats").json()
    rates = [v.rates(t0, t1) for v in viewers]
    by_thread = {k: (v - by_thread0.get(k, 0.0)) / (t1 - t0) for k, v in stats["cpu_seconds"].items()}
    return {"cores": (cpu1 - cpu0) / (t1 - t0), "render_fps": stats["render_fps"], "by_thread": by_thread,
            "parts": [p for p, _ in rates], "distinct": [d for _, d in rates]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    ap.add_argument("--warmup", type=float, default=30.0, help="one viewer watches this long before measuring")
    ap.add_argument("--viewers", type=int, default=20, help="viewers in the many-viewers row")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("server_args", nargs="*", help="more server.py arguments (after --)")
    args = ap.parse_args()

    server = Server(args.port or free_port(), args.server_args)
    feed = server.base + "/api/talkinghead/result_feed"
    rows = []
    try:
        one = Viewer(feed)
        one.start()
        time.sleep(args.warmup)
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
          f"{args.warmup:.0f} s warm-up, {args.seconds:.0f} s per row; state at the end: {stats['state']}\n")
    print("| over HTTP | distinct frames/s per viewer (min / mean) | parts/s per viewer | server CPU (cores) "
          "| render FPS |")
    print("|---|---:|---:|---:|---:|")
    for label, m in rows:
        d, p = m["distinct"], m["parts"]
        per_viewer = f"{min(d):.1f} / {sum(d) / len(d):.1f}" if d else "–"
        parts = f"{sum(p) / len(p):.1f}" if p else "–"
        print(f"| {label} | {per_viewer} | {parts} | {m['cores']:.2f} | {m['render_fps']} |")
    groups = sorted({g for _, m in rows for g in m["by_thread"]})
    print("\n| server CPU by thread (cores) | " + " | ".join(groups) + " |")
    print("|---|" + "---:|" * len(groups))
    for label, m in rows:
        print(f"| {label} | " + " | ".join(f"{m['by_thread'].get(g, 0.0):.2f}" for g in groups) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
