"""Peak memory of the real server, as a SillyTavern user runs it: classify + talkinghead on the CPU, one
viewer on the stream, chat messages classified, emotions set, the character talking.

    python -m bench.bench_server_memory [--seconds 60]

Starts `server.py --enable-modules=classify,talkinghead` on a free loopback port, drives it over HTTP, and
reads the server process's VmHWM (peak resident set) and VmRSS from /proc (Linux only).
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from bench.common import free_port

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = ["I love this so much!", "Why would you do that to me?", "That is really sad news.",
            "Wow, I did not expect that at all!", "Hmm, I am not sure what you mean.", "Get out of here!"]


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


class Viewer(threading.Thread):
    """Reads the PNG stream like a browser <img> and counts the parts."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.parts, self.stop = url, 0, threading.Event()

    def run(self):
        try:
            with requests.get(self.url, stream=True, timeout=30) as response:
                for chunk in response.iter_content(chunk_size=65536):
                    self.parts += chunk.count(b"--frame")
                    if self.stop.is_set():
                        return
        except requests.RequestException:
            if not self.stop.is_set():
                raise  # the stream broke while we were watching


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(ROOT / "server.py"), "--enable-modules=classify,talkinghead",
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        while True:
            try:
                requests.get(f"{base}/api/modules", timeout=2)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() - started > 300:
                    print("the server did not come up", file=sys.stderr)
                    return 1
                time.sleep(0.5)
        ready_s = time.monotonic() - started
        viewer = Viewer(f"{base}/api/talkinghead/result_feed")
        viewer.start()
        end = time.monotonic() + args.seconds
        for message in itertools.cycle(MESSAGES):
            if time.monotonic() > end:
                break
            label = requests.post(f"{base}/api/classify", json={"text": message}, timeout=30).json()[
                "classification"][0]["label"]
            requests.post(f"{base}/api/talkinghead/set_emotion", json={"emotion_name": label}, timeout=30)
            requests.get(f"{base}/api/talkinghead/start_talking", timeout=30)
            time.sleep(3)
            requests.get(f"{base}/api/talkinghead/stop_talking", timeout=30)
            time.sleep(2)
        parts = viewer.parts
        viewer.stop.set()
        memory = memory_mb(server.pid)
        stats = requests.get(f"{base}/api/talkinghead/stats", timeout=10).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"server ready in {ready_s:.1f} s; {args.seconds:.0f} s of chat (classify, set_emotion, 3 s talking, "
          f"2 s quiet); the viewer got {parts} frames ({parts / args.seconds:.1f}/s); /stats render_fps "
          f"{stats.get('render_fps')}\n")
    print("| server process | MB |\n|---|---:|")
    print(f"| peak resident (VmHWM) | {memory['VmHWM']:.0f} |\n| resident at the end (VmRSS) | {memory['VmRSS']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
