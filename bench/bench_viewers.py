"""Many viewers and the API at once, over HTTP from a real server process: does the API still answer, is the
viewer past the cap refused, does everything come back when the viewers leave?

    python -m bench.bench_viewers [--viewers 60] [--seconds 60] [--format jpeg|png] [--pause 0.1] [--port 0]
                                  [-- SERVER ARGS]

Starts `server.py --enable-modules=classify,talkinghead --talkinghead-max-viewers=VIEWERS`, warms it up (a
viewer and a classify: what stays once made), waits until it is idle and takes the baseline: the server
process's threads (/proc/<pid>/task) and open file descriptors (/proc/<pid>/fd). Then VIEWERS readers of
result_feed, in a child process (one thread, raw sockets, each read as soon as bytes come: readers that keep
up), watch for --seconds while this process sends `set_emotion`, `classify` and `GET /api/talkinghead/stats` in
turn, one every --pause s on one keep-alive connection (as a chat client does), timing each answer. Once all
readers have their first frame, one more viewer asks for the stream: the cap's 503. Afterwards the readers
leave, the server goes idle again and threads and FDs are taken once more. Prints a table; exits 1 when an
API call failed, the extra viewer was not refused, or threads / FDs stay above the baseline.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import selectors
import socket
import sys
import time

import requests

from bench.bench_delivery import Server, cpu_seconds
from bench.common import free_port, wait_for

BOUNDARY = b"--frame\r\n"
EMOTIONS = ["joy", "anger", "sadness", "surprise", "neutral", "curiosity"]
TEXTS = ["I am so happy to see you!", "This is terrible.", "What? Really?", "Hmm, let me think."]


def read_streams(port: int, path: str, count: int, ready, stop, results) -> None:
    """The readers (a child process): `count` viewers read by one thread; `ready` set when each has its first
    part, reading until `stop`; puts [(status line, parts, bytes)] on `results`."""
    selector = selectors.DefaultSelector()
    seen = {}
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        selector.register(s, selectors.EVENT_READ)
        seen[s] = [b"", 0, 0, b""]  # first bytes, parts (boundaries seen), bytes, the tail of the last read
    buf = bytearray(1 << 18)
    while not stop.is_set():
        for key, _ in selector.select(timeout=0.1):
            n = key.fileobj.recv_into(buf)
            entry = seen[key.fileobj]
            if not n:
                selector.unregister(key.fileobj)
                continue
            data = bytes(buf[:n])
            if not entry[0]:
                entry[0] = data[:data.find(b"\r\n")]
            both = entry[3] + data
            entry[1] += both.count(BOUNDARY)
            entry[2] += n
            entry[3] = both[-(len(BOUNDARY) - 1):]
        if not ready.is_set() and all(e[1] >= 2 for e in seen.values()):  # the first head and the first frame
            ready.set()
    results.put([(e[0].decode("latin-1"), e[1], e[2]) for e in seen.values()])
    for s in seen:
        s.close()


def sample(pid: int) -> dict:
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=60, help="readers, and the server's --talkinghead-max-viewers")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--format", choices=["jpeg", "png"], default="jpeg")
    ap.add_argument("--pause", type=float, default=0.1, help="seconds between API calls")
    ap.add_argument("--idle-seconds", type=float, default=2.0, help="the server's --talkinghead-idle-seconds")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("server_args", nargs="*", help="more server.py arguments (after --)")
    args = ap.parse_args()
    load_average = os.getloadavg()  # the machine is shared: say how busy it was when this run began
    port = args.port or free_port()
    path = "/api/talkinghead/result_feed" + ("?format=jpeg" if args.format == "jpeg" else "")
    server = Server(port, [f"--talkinghead-max-viewers={args.viewers}",
                           f"--talkinghead-idle-seconds={args.idle_seconds:g}", *args.server_args],
                    modules="classify,talkinghead")
    pid = server.process.pid
    session = requests.Session()
    stats = lambda: session.get(server.base + "/api/talkinghead/stats", timeout=30).json()  # noqa: E731
    failures: list[str] = []
    try:
        # Warm-up (the classifier's thread pool, the first stream's threads), then the idle baseline.
        session.post(server.base + "/api/classify", json={"text": "hello"}, timeout=60)
        with requests.get(server.base + path, stream=True, timeout=60) as warm:
            next(warm.iter_content(1 << 16))
            time.sleep(3)
        wait_for(lambda: stats()["state"] == "idle" and stats()["viewers"] == 0, args.idle_seconds + 30, 0.25)
        time.sleep(1)
        before = sample(pid)

        ready, stop, results = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Queue()
        readers = multiprocessing.Process(target=read_streams, args=(port, path, args.viewers, ready, stop, results),
                                          daemon=True)
        readers.start()
        if not ready.wait(120):
            failures.append("not every reader had its first frame within 120 s")
        extra = requests.get(server.base + path, headers={"Connection": "close"}, timeout=30)  # past the cap
        extra_answer = f"{extra.status_code} {extra.text.strip()[:160]}"
        if extra.status_code != 503:
            failures.append(f"viewer {args.viewers + 1} got {extra_answer}")
        extra.close()

        calls = [("set_emotion", lambda i: session.post(server.base + "/api/talkinghead/set_emotion",
                                                        json={"emotion_name": EMOTIONS[i % len(EMOTIONS)]},
                                                        timeout=30)),
                 ("classify", lambda i: session.post(server.base + "/api/classify",
                                                     json={"text": TEXTS[i % len(TEXTS)]}, timeout=30)),
                 ("stats", lambda i: session.get(server.base + "/api/talkinghead/stats", timeout=30))]
        latency: dict[str, list[float]] = {name: [] for name, _ in calls}
        by_thread0, readers_cpu0 = stats()["cpu_seconds"], cpu_seconds(readers.pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        during, viewers_seen, i = None, [], 0
        while time.monotonic() - t0 < args.seconds:
            name, call = calls[i % len(calls)]
            start = time.perf_counter()
            answer = call(i // len(calls))
            latency[name].append(1000 * (time.perf_counter() - start))
            if answer.status_code != 200:
                failures.append(f"{name}: {answer.status_code} {answer.text[:200]}")
            if name == "stats":
                viewers_seen.append(answer.json()["viewers"])
            if during is None and time.monotonic() - t0 > args.seconds / 2:
                during = sample(pid)
            i += 1
            time.sleep(args.pause)
        elapsed = time.monotonic() - t0
        cores = (cpu_seconds(pid) - cpu0) / elapsed
        by_thread = {k: (v - by_thread0.get(k, 0.0)) / elapsed for k, v in stats()["cpu_seconds"].items()}
        readers_cores = (cpu_seconds(readers.pid) - readers_cpu0) / elapsed
        stop.set()
        received = results.get(timeout=60)
        readers.join(timeout=30)
        wait_for(lambda: stats()["viewers"] == 0 and stats()["state"] == "idle", args.idle_seconds + 60, 0.25)
        wait_for(lambda: sample(pid)["threads"] <= before["threads"] and sample(pid)["fds"] <= before["fds"], 15, 0.25)
        after = sample(pid)
    finally:
        server.close()

    rates = sorted(parts / elapsed for _, parts, _ in received)  # parts over the whole run, about its length
    statuses = {status for status, _, _ in received}
    mb_s = sum(size for _, _, size in received) / elapsed / 2**20
    print(f"\nbench_viewers: {args.viewers} {args.format.upper()} viewers for {elapsed:.0f} s, API calls every "
          f"{args.pause:g} s; server.py --enable-modules=classify,talkinghead {' '.join(args.server_args)}; load "
          f"average {' '.join(f'{x:.2f}' for x in load_average)} at the start")
    print(f"\n| API call (during) | calls | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, values in latency.items():
        print(f"| {name} | {len(values)} | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} | "
              f"{max(values):.1f} |")
    print(f"\n| viewers | value |\n|---|---|")
    print(f"| status lines | {', '.join(sorted(statuses))} |")
    print(f"| parts/s per viewer (min / median / max) | {rates[0]:.1f} / {rates[len(rates) // 2]:.1f} / "
          f"{rates[-1]:.1f} |")
    print(f"| sent to all viewers | {mb_s:.1f} MB/s |")
    print(f"| viewers in /stats (min / max) | {min(viewers_seen)} / {max(viewers_seen)} |")
    print(f"| viewer {args.viewers + 1} | {extra_answer} |")
    threads = ", ".join(f"{group} {value:.2f}" for group, value in by_thread.items() if value >= 0.005)
    print(f"| server CPU | {cores:.2f} cores ({threads}) |")
    print(f"| the readers' CPU (this bench's child process) | {readers_cores:.2f} cores |")
    print(f"\n| server process | before (idle) | during | after (idle) |\n|---|---:|---:|---:|")
    for key in ("threads", "fds"):
        print(f"| {key} | {before[key]} | {during[key] if during else '-'} | {after[key]} |")

    if statuses != {"HTTP/1.1 200 OK"}:
        failures.append(f"viewers' status lines: {statuses}")
    if after["threads"] > before["threads"] or after["fds"] > before["fds"]:
        failures.append(f"threads/FDs after {after['threads']}/{after['fds']} > before "
                        f"{before['threads']}/{before['fds']}")
    print("\n" + ("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures[:10])))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
