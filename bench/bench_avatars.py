"""Several avatars on one server, as users get them: a real server process (classify + talkinghead, on the CPU),
avatars made over HTTP, one PNG viewer each.

    python -m bench.bench_avatars [--avatars 3] [--warmup 60] [--seconds 30] [--port 0] [--keep DIR]

Starts `server.py --enable-modules=classify,talkinghead` with an empty keyframe folder, makes the avatars
(`default` shows lambda_00, the second lambda_01, the third lambda_00 mirrored: three characters, as in a
group chat; more repeat them) and opens one result_feed viewer per avatar. Prints, for 10 s windows of the
warm-up and then for the steady state (`--seconds`): the server's cores (user + system, all its threads), and
per avatar the distinct frames/s received (a part whose bytes differ from the part before it; keep-alive
re-sends are repeats), parts/s, the 99th percentile and largest gap between distinct frames, and the
keyframes it rendered; then the server's RSS. Last, the same with one viewer left (the other avatars
unwatched, past --talkinghead-idle-seconds): what an unwatched avatar costs.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from bench.bench_delivery import Server, Viewer, cpu_seconds, gap_figures
from bench.common import free_port, keyframe_folder
from talkinghead import weights

AVATARS = "/api/talkinghead/avatars"


def characters(count: int) -> list[bytes]:
    """PNGs of `count` characters: lambda_00, lambda_01, lambda_00 mirrored, then again."""
    first = weights.DEFAULT_CHARACTER.read_bytes()
    second = (weights.IMAGES_DIR / "lambda_01.png").read_bytes()
    mirrored = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(first)))[:, ::-1].copy()).save(mirrored, format="PNG")
    pool = [first, second, mirrored.getvalue()]
    return [pool[k % len(pool)] for k in range(count)]


def feed_path(avatar_id: str) -> str:
    return "/api/talkinghead" if avatar_id == "default" else f"{AVATARS}/{avatar_id}"


def window(server: Server, viewers: dict[str, Viewer], seconds: float) -> dict:
    stats0 = {a: server.get(f"{feed_path(a)}/stats").json() for a in viewers}
    cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(server.process.pid), time.monotonic()
    stats = {a: server.get(f"{feed_path(a)}/stats").json() for a in viewers}
    per_avatar = {}
    for a, viewer in viewers.items():
        parts, distinct = viewer.rates(t0, t1)
        gaps = gap_figures(viewer.distinct_times(t0, t1), t0, t1)
        per_avatar[a] = {"parts": parts, "distinct": distinct, "p99": gaps["p99"], "max": gaps["max"],
                         "keyframes": stats[a]["keyframes"]["rendered"] - stats0[a]["keyframes"]["rendered"],
                         "stored": stats[a]["keyframes"]["stored"]}
    return {"cores": (cpu1 - cpu0) / (t1 - t0), "avatars": per_avatar}


HEADER = ("| phase | server cores | avatar | distinct frames/s | parts/s | p99 / max gap ms | keyframes rendered "
          "(stored) |\n|---|---|---|---|---|---|---|")


def rows(name: str, w: dict) -> str:
    out = []
    for k, (a, f) in enumerate(w["avatars"].items()):
        lead = f"| {name} | {w['cores']:.2f} |" if k == 0 else "| | |"
        out.append(f"{lead} {a} | {f['distinct']:.1f} | {f['parts']:.1f} | {f['p99']:.0f} / {f['max']:.0f} | "
                   f"{f['keyframes']} ({f['stored']}) |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--avatars", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=60.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--keep", default=None, help="keyframe folder to use and keep (default: a fresh temporary one)")
    a = ap.parse_args()
    with keyframe_folder(a.keep, "bench-avatars-keyframes-") as folder:
        return measure(a, folder)


def measure(a: argparse.Namespace, folder: Path) -> int:
    print(f"# bench_avatars: real server (classify + talkinghead, CPU), {a.avatars} avatars, one PNG viewer each, "
          f"over HTTP; {psutil.cpu_count()} CPUs; load average at start {psutil.getloadavg()[0]:.1f}")
    started = time.monotonic()
    server = Server(a.port or free_port(), ["--talkinghead-keyframes", str(folder)], modules="classify,talkinghead")
    viewers: dict[str, Viewer] = {}
    try:
        ids = ["default"] + [f"avatar-{k + 1}" for k in range(1, a.avatars)]
        pngs = characters(a.avatars)
        for avatar_id, png in zip(ids[1:], pngs[1:]):
            server.post(AVATARS, data={"id": avatar_id}, files={"file": ("c.png", png, "image/png")}).raise_for_status()
        for avatar_id in ids:
            viewers[avatar_id] = Viewer(f"{server.base}{feed_path(avatar_id)}/result_feed")
            viewers[avatar_id].start()
        print(f"\nserver ready and {a.avatars} avatars made {time.monotonic() - started:.0f} s after launch")

        print(f"\n## Warm-up from an empty keyframe folder ({a.warmup:g} s)\n{HEADER}")
        for k in range(int(a.warmup // 10)):
            print(rows(f"{10 * k}-{10 * k + 10} s", window(server, viewers, 10.0)), flush=True)

        print(f"\n## Steady state ({a.seconds:g} s)\n{HEADER}")
        print(rows("idle, every avatar watched", window(server, viewers, a.seconds)), flush=True)
        for avatar_id in ids:
            server.get(f"{feed_path(avatar_id)}/start_talking")
        print(rows("all talking", window(server, viewers, a.seconds)), flush=True)
        for avatar_id in ids:
            server.get(f"{feed_path(avatar_id)}/stop_talking")
        rss = psutil.Process(server.process.pid).memory_info().rss
        print(f"\n| server RSS ({a.avatars} avatars, classify + talkinghead) | {rss / 2 ** 20:.0f} MB |")

        for avatar_id in ids[1:]:
            viewers.pop(avatar_id).close()
        time.sleep(8)  # past the default --talkinghead-idle-seconds (5): the unwatched avatars stop
        states = {i: server.get(f"{feed_path(i)}/stats").json()["state"] for i in ids}
        print(f"\n## One viewer left, the other avatars unwatched ({a.seconds:g} s; states: "
              f"{', '.join(f'{i} {s}' for i, s in states.items())})\n{HEADER}")
        print(rows("default watched only", window(server, viewers, a.seconds)), flush=True)
    finally:
        for viewer in viewers.values():
            viewer.close()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
