"""Where the server's CPU goes, by thread: the frame thread, the two smooth-stream workers, the viewers'
threads (one per watched stream encoding its frames, one writing them to every viewer), the exact stills'
thread, the HTTP request threads, and the rest (the backend's own inference threads, the HTTP server's loop,
Python's). For /stats and the benchmarks: a figure to cut from needs to say whose it is."""
from __future__ import annotations

import threading
from pathlib import Path

import psutil

# Python thread name prefixes → group; threads the engine and the stream writer name themselves, and waitress's
# request threads.
_GROUPS = (("talkinghead-render", "frame thread"), ("talkinghead-keyframes", "keyframe worker"),
           ("talkinghead-faces", "face worker"), ("talkinghead-broadcast", "viewers: encoding"),
           ("talkinghead-viewers", "viewers: sending"), ("talkinghead-still", "exact stills"),
           ("waitress", "HTTP threads"))


def cpu_seconds_by_thread() -> dict[str, float]:
    """User + system CPU seconds so far of this process's threads, summed by group. Threads Python did not
    start are "backend (workers' networks)" when they run at the workers' lower priority (OpenVINO's
    inference threads, which inherit it: smooth.apply_backend), else "other"."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    totals: dict[str, float] = {}
    for thread in psutil.Process().threads():
        name = names.get(thread.id, "")
        group = next((label for prefix, label in _GROUPS if name.startswith(prefix)), None)
        if group is None:
            group = "backend (workers' networks)" if _nice(thread.id) > 0 else "other"
        totals[group] = totals.get(group, 0.0) + thread.user_time + thread.system_time
    return {k: round(v, 2) for k, v in sorted(totals.items())}


def _nice(tid: int) -> int:
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[16])  # field 19 of stat, counted from the state (field 3)
    except (OSError, IndexError, ValueError):
        return 0
