"""The CPU stream by pose, as a user gets it: a real server process, one PNG viewer over HTTP.

    python -m bench.bench_pose_stream [--warmup 90] [--seconds 30] [--port 0] [--keep DIR]

Starts `server.py --enable-modules=classify,talkinghead` with an empty keyframe folder and prints:
* warm-up: 10 s windows from the server's start (new character, nothing stored): the server's cores, distinct
  frames/s received, keyframes rendered, the largest gap between two distinct frames;
* steady state, idle and talking (`--seconds` each), a new emotion and an old one, idle with the sway drawing
  every target afresh (sway_postures 0, as before postures), and idle and talking with the sway off (a
  resting head): cores, parts/s and distinct frames/s, the 99th percentile and largest gap between distinct
  frames, the keyframes rendered, read back from disk and stored;
* exact stills: POST /api/talkinghead/render while the viewer watches (the first, then the median of 5);
* memory: the server's RSS (both modules), the keyframes on disk;
* warm starts: a restart with the same keyframe folder, and a reload of the character after another one:
  the seconds until the stored keyframes are back, and the cost of the 10 s after.
A part is distinct when its bytes differ from the part before it (keep-alive re-sends are repeats).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil

from bench.bench_delivery import Server, Viewer, cpu_seconds
from bench.common import free_port, keyframe_folder
from talkinghead import weights

ROOT = Path(__file__).resolve().parent.parent


def gaps(viewer: Viewer, t0: float, t1: float) -> list[float]:
    """Seconds between consecutive distinct parts received in [t0, t1)."""
    times, last = [], None
    for t, h, _ in viewer.parts:
        if t0 <= t < t1 and h != last:
            times.append(t)
        last = h
    return [b - a for a, b in zip(times, times[1:])]


def window(server: Server, viewer: Viewer, seconds: float) -> dict:
    stats0 = server.get("/api/talkinghead/stats").json()
    cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(server.process.pid), time.monotonic()
    stats = server.get("/api/talkinghead/stats").json()
    parts, distinct = viewer.rates(t0, t1)
    g = sorted(gaps(viewer, t0, t1)) or [float("nan")]
    return {"cores": (cpu1 - cpu0) / (t1 - t0), "parts": parts, "distinct": distinct,
            "p99_gap_ms": 1000 * g[min(len(g) - 1, int(0.99 * len(g)))], "max_gap_ms": 1000 * g[-1],
            "rendered": stats["keyframes"]["rendered"] - stats0["keyframes"]["rendered"],
            "stored": stats["keyframes"]["stored"], "loaded": stats["keyframes"]["loaded_from_disk"],
            "recalled": stats["keyframes"]["recalled_from_disk"] - stats0["keyframes"]["recalled_from_disk"],
            "keyframe_ms": stats.get("keyframe_ms")}


def row(name: str, w: dict) -> str:
    return (f"| {name} | {w['cores']:.2f} | {w['parts']:.1f} | {w['distinct']:.1f} | {w['p99_gap_ms']:.0f} | "
            f"{w['max_gap_ms']:.0f} | {w['rendered']} | {w['recalled']} | {w['stored']} |")


HEADER = ("| phase | cores | parts/s | distinct/s | p99 gap ms | max gap ms | keyframes rendered | read back from "
          "disk | stored |\n|---|---|---|---|---|---|---|---|---|")


def peak_rss(pid: int) -> int:
    """The process's largest resident size so far (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start(port: int, folder: Path) -> tuple[Server, Viewer, float]:
    started = time.monotonic()
    server = Server(port, ["--talkinghead-keyframes", str(folder)], modules="classify,talkinghead")
    viewer = Viewer(f"{server.base}/api/talkinghead/result_feed")
    viewer.start()
    return server, viewer, started


def wait_loaded(server: Server, since: float, timeout: float = 30.0) -> float | None:
    """Seconds from `since` until the stats say stored keyframes came back from disk (and stopped coming)."""
    deadline, seen, settled = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        loaded = server.get("/api/talkinghead/stats").json()["keyframes"]["loaded_from_disk"]
        if loaded and loaded == seen:
            return settled - since
        seen, settled = loaded, time.monotonic()
        time.sleep(0.1)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=float, default=90.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--keep", default=None, help="keyframe folder to use and keep (default: a fresh temporary one)")
    a = ap.parse_args()
    with keyframe_folder(a.keep, "bench-keyframes-") as folder:
        return measure(a, folder)


def measure(a: argparse.Namespace, folder: Path) -> int:
    port = a.port or free_port()
    print(f"# bench_pose_stream: real server (classify + talkinghead, CPU), one PNG viewer over HTTP; "
          f"{psutil.cpu_count()} CPUs; load average at start {psutil.getloadavg()[0]:.1f}")

    server, viewer, started = start(port, folder)
    try:
        print(f"\n## Warm-up from an empty keyframe folder (server ready {time.monotonic() - started:.0f} s after launch)")
        print(HEADER)
        for k in range(int(a.warmup // 10)):
            print(row(f"{10 * k}-{10 * k + 10} s", window(server, viewer, 10.0)), flush=True)

        print(f"\n## Steady state ({a.seconds:g} s each)")
        print(HEADER)
        print(row("idle", window(server, viewer, a.seconds)), flush=True)
        server.post("/api/talkinghead/start_talking")
        print(row("talking", window(server, viewer, a.seconds)), flush=True)
        server.post("/api/talkinghead/stop_talking")
        server.post("/api/talkinghead/set_emotion", json={"emotion_name": "joy"})
        print(row("joy (a new emotion)", window(server, viewer, a.seconds)), flush=True)
        server.post("/api/talkinghead/set_emotion", json={"emotion_name": "neutral"})
        print(row("neutral again", window(server, viewer, a.seconds)), flush=True)
        # The floor of the design: a head that rests (sway off) breathes, blinks and talks from two keyframes.
        server.post("/api/talkinghead/load_animator_settings", json={"sway_macro_strength": 0.0})
        time.sleep(10)
        print(row("idle, sway off (after 10 s)", window(server, viewer, a.seconds)), flush=True)
        server.post("/api/talkinghead/start_talking")
        print(row("talking, sway off", window(server, viewer, a.seconds)), flush=True)
        server.post("/api/talkinghead/stop_talking")
        server.post("/api/talkinghead/load_animator_settings", json={})

        print("\n## Exact stills while the viewer watches (POST /api/talkinghead/render: emotion 'joy', each with "
              "another head turn, so no stage of the poser is cached)")
        times = []
        for k in range(6):
            t0 = time.monotonic()
            r = server.post("/api/talkinghead/render", json={"emotion": "joy", "pose": {"head_y_index": k / 10 - 0.3}})
            times.append(time.monotonic() - t0)
            assert r.ok, r.text
        print(f"| first | {1000 * times[0]:.0f} ms |\n"
              f"| then, median of 5 | {1000 * statistics.median(times[1:]):.0f} ms (max {1000 * max(times[1:]):.0f}) |")

        time.sleep(6)  # the stills' temporaries are handed back within 5 s (talkinghead/memory.py)
        rss = psutil.Process(server.process.pid).memory_info().rss
        peak = peak_rss(server.process.pid)
        disk = sum(f.stat().st_size for f in folder.rglob("*.npz"))
        print(f"\n## Memory\n| server RSS (classify + talkinghead) | {rss / 2 ** 20:.0f} MB (peak so far "
              f"{peak / 2 ** 20:.0f} MB) |\n"
              f"| keyframes on disk | {disk / 2 ** 20:.0f} MB in {len(list(folder.rglob('*.npz')))} files |")

        print("\n## Reload of a character seen before (load lambda_01, then lambda_00 again)")
        other = (weights.IMAGES_DIR / "lambda_01.png").read_bytes()
        server.post("/api/talkinghead/load", files={"file": ("lambda_01.png", other, "image/png")})
        time.sleep(5)
        t0 = time.monotonic()
        server.post("/api/talkinghead/load", files={"file": ("lambda_00.png", weights.DEFAULT_CHARACTER.read_bytes(),
                                                            "image/png")})
        back = wait_loaded(server, t0)
        print(f"| keyframes back from disk after | {back if back is None else f'{back:.1f} s'} |")
        print(HEADER)
        print(row("10 s after the reload", window(server, viewer, 10.0)), flush=True)
    finally:
        viewer.close()
        server.close()

    print("\n## Restart with the same keyframe folder")
    server, viewer, started = start(port, folder)
    try:
        ready = time.monotonic()
        back = wait_loaded(server, ready)
        print(f"| server ready after launch | {ready - started:.1f} s |")
        print(f"| keyframes back from disk, from ready | {back if back is None else f'{back:.1f} s'} |")
        print(HEADER)
        print(row("first 10 s after the restart", window(server, viewer, 10.0)), flush=True)
        print(row("next 10 s", window(server, viewer, 10.0)), flush=True)
        # Last (its keyframes crowd the character's others on disk): the sway as it was before postures, a new
        # random target every move, which the store rarely has the poses of.
        server.post("/api/talkinghead/load_animator_settings", json={"sway_postures": 0})
        print(row(f"idle, sway_postures 0 (every target new), {a.seconds:g} s", window(server, viewer, a.seconds)),
              flush=True)
    finally:
        viewer.close()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
