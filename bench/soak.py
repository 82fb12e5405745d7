"""Soak: the real server for a long while under many viewers and a busy client, on the loopback only.

    .venv/bin/python -m bench.soak [--minutes 30 | --quick] [--viewers 20] [--port 0] [-- SERVER ARGS]

Starts `server.py --enable-modules=classify,talkinghead` on 127.0.0.1, lets one viewer warm it up, waits until
it is idle again and takes the baseline (threads, open file descriptors, RSS of the server process). Then for
`--minutes` (30; `--quick`: 5): `--viewers` result_feed viewers (half PNG, half `?format=jpeg`), parts split
with talkinghead.stream.PartReader (the boundary delimits them, no Content-Length), plus one client that
keeps sending classify, set_emotion, start/stop_talking, load_animator_settings and load_emotion_templates.
Every part is checked: a PNG is verified (signature, 512x512 header, every chunk's CRC) and every 10th is
decoded whole; a JPEG is decoded (at 1/8 scale: all of its entropy-coded data is read). Afterwards all viewers
disconnect, the server goes idle (--talkinghead-idle-seconds, stats state "idle") and threads, FDs and RSS are
taken again.

Prints a row every 30 s and a summary; exits 1 when a part failed to decode, a request failed, the render FPS
at the end is under 80 % of the start's, threads / FDs after are above the warm baseline, RSS after is more
than --rss-slack-mb above it, or RSS still grows in the second half of the run (more than a third of the
slack over the first half's peak: no plateau).
"""
from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests
from PIL import Image

from bench.common import free_port, stop_process, wait_for
from talkinghead.stream import PartReader

ROOT = Path(__file__).resolve().parent.parent

EMOTIONS = ["joy", "anger", "sadness", "surprise", "neutral", "curiosity", "fear", "no-such-emotion"]
TEXTS = ["I am so happy to see you!", "This is terrible.", "What? Really?", "Hmm, let me think.",
         "I miss you so much.", "Get out of here!", "Thank you, that is kind."]


class Viewer(threading.Thread):
    def __init__(self, url: str, fmt: str):
        super().__init__(daemon=True)
        self.url, self.fmt = url, fmt
        self.parts = self.bad = 0
        self.errors: list[str] = []
        self._response = None
        self._halt = threading.Event()

    def run(self):
        try:
            self._response = requests.get(self.url, stream=True, timeout=60)
            reader = PartReader(self._response.iter_content(chunk_size=None))
            while not self._halt.is_set():
                got = reader.read(1)
                if not got:
                    if not self._halt.is_set():
                        self.errors.append("the stream ended")
                    return
                headers, data = got[0]
                self.parts += 1
                problem = check_part(headers, data, full=self.parts % 10 == 0)
                if problem:
                    self.bad += 1
                    self.errors.append(problem)
        except Exception as e:  # noqa: BLE001 - a viewer reports what ended it
            if not self._halt.is_set():
                self.errors.append(f"{type(e).__name__}: {e}")

    def close(self):
        self._halt.set()
        if self._response is not None:
            self._response.close()
        self.join(timeout=10)


def check_part(headers: dict, data: bytes, full: bool) -> str | None:
    kind = headers.get("Content-Type")
    try:
        image = Image.open(io.BytesIO(data))
        if image.size != (512, 512):
            return f"{kind} of size {image.size}"
        if kind == "image/png":
            if image.format != "PNG" or image.mode != "RGBA":
                return f"PNG part is {image.format} {image.mode}"
            image.verify()
            if full:
                Image.open(io.BytesIO(data)).load()
        elif kind == "image/jpeg":
            if image.format != "JPEG":
                return f"JPEG part is {image.format}"
            image.draft("RGB", (64, 64))
            image.load()
        else:
            return f"part of type {kind!r}"
    except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
        return f"{kind}: {type(e).__name__}: {e}"
    return None


class Hammer(threading.Thread):
    """One client sending the commands a chat sends, back to back with a short pause."""

    def __init__(self, base: str, pause: float):
        super().__init__(daemon=True)
        self.base, self.pause = base, pause
        self.requests = 0
        self.errors: list[str] = []
        self._halt = threading.Event()
        self.session = requests.Session()

    def run(self):
        rng = random.Random(1)
        actions = [
            lambda: self.session.post(self.base + "/api/classify", json={"text": rng.choice(TEXTS)}, timeout=30),
            lambda: self.session.post(self.base + "/api/talkinghead/set_emotion",
                                      json={"emotion_name": rng.choice(EMOTIONS)}, timeout=30),
            lambda: self.session.get(self.base + "/api/talkinghead/start_talking", timeout=30),
            lambda: self.session.get(self.base + "/api/talkinghead/stop_talking", timeout=30),
            lambda: self.session.post(self.base + "/api/talkinghead/load_animator_settings",
                                      json=rng.choice([{}, {"target_fps": 25}, {"blink_probability": 0.05}]),
                                      timeout=30),
            lambda: self.session.post(self.base + "/api/talkinghead/load_emotion_templates",
                                      json=rng.choice([{}, {"joy": {"mouth_aaa_index": 0.4,
                                                                     "eye_happy_wink_left_index": 1.0}}]),
                                      timeout=30),
        ]
        while not self._halt.wait(self.pause):
            try:
                response = rng.choice(actions)()
                self.requests += 1
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as e:
                self.errors.append(f"{type(e).__name__}: {e}")

    def close(self):
        self._halt.set()
        self.join(timeout=60)
        self.session.close()


def sample(process: psutil.Process) -> dict:
    return {"threads": process.num_threads(), "fds": process.num_fds(), "rss_mb": process.memory_info().rss / 2**20}


def stats(base: str) -> dict:
    return requests.get(base + "/api/talkinghead/stats", timeout=30).json()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="5 minutes")
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between the busy client's requests")
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="the server's --talkinghead-idle-seconds")
    ap.add_argument("--rss-slack-mb", type=float, default=300.0,
                    help="RSS after may exceed the warm baseline by this much: the smooth stream's face cache "
                         "(up to 400 faces) fills as emotions change, and the allocator keeps "
                         "per-thread arenas")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("server_args", nargs="*", help="more server.py arguments (after --)")
    args = ap.parse_args()
    minutes = 5.0 if args.quick else args.minutes
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    feed = base + "/api/talkinghead/result_feed"

    log_file = open(ROOT / "test-artifacts" / "soak-server.log", "w") if (ROOT / "test-artifacts").is_dir() \
        else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "server.py", "--enable-modules=classify,talkinghead",
                               "--port", str(port), f"--talkinghead-idle-seconds={args.idle_seconds:g}",
                               *args.server_args], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    failures: list[str] = []
    rows = []
    try:
        def up():
            try:
                return requests.get(base + "/api/modules", timeout=2).ok
            except requests.RequestException:
                return server.poll() is not None
        if not wait_for(up, 600, 0.5) or server.poll() is not None:
            raise SystemExit("the server did not start (see test-artifacts/soak-server.log)")
        process = psutil.Process(server.pid)
        cold = sample(process)

        # Warm-up: a PNG and a JPEG viewer and the busy client build what lasts (the classifier's thread pool
        # starts on the first classify: +2 threads, once), so the baseline is the warm, idle server.
        warm = [Viewer(feed, "png"), Viewer(feed + "?format=jpeg", "jpeg"), Hammer(base, args.pause)]
        for w in warm:
            w.start()
        time.sleep(20)
        for w in warm:
            w.close()
        wait_for(lambda: stats(base)["state"] == "idle", args.idle_seconds + 30, 0.5)
        time.sleep(3)
        before, faces_before = sample(process), stats(base).get("face_cache", {}).get("entries")

        viewers = [Viewer(feed if i % 2 == 0 else feed + "?format=jpeg", "png" if i % 2 == 0 else "jpeg")
                   for i in range(args.viewers)]
        for v in viewers:
            v.start()
        hammer = Hammer(base, args.pause)
        hammer.start()
        t0 = time.monotonic()
        end = t0 + minutes * 60
        peak = dict(before)
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            s, now = stats(base), sample(process)
            peak = {k: max(peak[k], now[k]) for k in now}
            row = (time.monotonic() - t0, s["render_fps"], s["state"], s["viewers"], now,
                   sum(v.parts for v in viewers), hammer.requests, s.get("face_cache", {}).get("entries"))
            rows.append(row)
            print(f"{row[0]:6.0f} s  render {row[1]:5.1f} fps  {row[2]:<7} viewers {row[3]:2d}  "
                  f"threads {now['threads']:3d}  fds {now['fds']:4d}  rss {now['rss_mb']:7.1f} MB  "
                  f"faces {row[7]}  parts {row[5]:7d}  requests {row[6]:6d}", flush=True)
        during = rows[-1][4] if rows else sample(process)
        hammer.close()
        for v in viewers:
            v.close()
        idle = wait_for(lambda: stats(base)["state"] == "idle" and stats(base)["viewers"] == 0,
                        args.idle_seconds + 60, 0.5)
        time.sleep(3)
        after = sample(process)
        final = stats(base)
    finally:
        stop_process(server)

    parts = [v.parts for v in viewers]
    bad = sum(v.bad for v in viewers)
    viewer_errors = [e for v in viewers for e in v.errors]
    fps_start = rows[0][1] if rows else 0.0
    fps_end = rows[-1][1] if rows else 0.0
    print(f"\nsoak: {args.viewers} viewers ({(args.viewers + 1) // 2} PNG, {args.viewers // 2} JPEG) + a busy client, "
          f"{minutes:g} min; server.py {' '.join(args.server_args)}")
    print(f"parts received per viewer: min {min(parts)}, max {max(parts)}; total {sum(parts)}; "
          f"bad parts {bad}; viewer errors {len(viewer_errors)}")
    print(f"busy client: {hammer.requests} requests, {len(hammer.errors)} failed")
    print(f"render FPS: {fps_start} at {rows[0][0]:.0f} s, {fps_end} at {rows[-1][0]:.0f} s; final state "
          f"{final['state']} (idle reached: {idle}), frames rendered {final['frames_rendered']}, last_error "
          f"{final['last_error']}")
    print("\n| server process | cold start | before (warm, idle) | during (end) | peak | after (idle) |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, unit in (("threads", ""), ("fds", ""), ("rss_mb", " MB")):
        print(f"| {key} | " + " | ".join(f"{d[key]:.0f}{unit}" for d in (cold, before, during, peak, after)) + " |")

    if bad or viewer_errors:
        failures.append(f"{bad} bad parts, viewer errors: {viewer_errors[:5]}")
    if hammer.errors:
        failures.append(f"busy client errors: {hammer.errors[:5]}")
    if fps_end < 0.8 * fps_start:
        failures.append(f"render FPS fell from {fps_start} to {fps_end}")
    if after["threads"] > before["threads"] or after["fds"] > before["fds"]:
        failures.append(f"threads/FDs after {after['threads']}/{after['fds']} > before "
                        f"{before['threads']}/{before['fds']}")
    if after["rss_mb"] > before["rss_mb"] + args.rss_slack_mb:
        failures.append(f"RSS after {after['rss_mb']:.0f} MB > before {before['rss_mb']:.0f} + "
                        f"{args.rss_slack_mb:g} MB")
    if not idle:
        failures.append("the server did not go idle after the viewers left")
    half = [r[4]["rss_mb"] for r in rows[len(rows) // 2:]]
    first = [r[4]["rss_mb"] for r in rows[:len(rows) // 2]] or half
    growth = max(half) - max(first)
    print(f"RSS plateau: max {max(first):.0f} MB in the first half, {max(half):.0f} MB in the second "
          f"(+{growth:.0f} MB); face cache {faces_before} -> {final.get('face_cache', {}).get('entries')} entries "
          "(an LRU of at most 400 faces of 192x192)")
    if growth > args.rss_slack_mb / 3:
        failures.append(f"RSS still growing in the second half: +{growth:.0f} MB")
    print("\n" + ("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
