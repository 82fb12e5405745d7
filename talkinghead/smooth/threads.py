"""How the smooth stream's threads share a 2-core CPU: one torch thread each, the workers (with the backend
threads that run their networks) at a lower priority than the frame thread, and how many backend threads each
network gets."""
from __future__ import annotations

import logging
import os
import threading

import torch

from talkinghead import backends

log = logging.getLogger(__name__)

# Threads per network for the backend in smooth mode. The face networks run on one: a face is ~20 ms of
# work, made often (blinks, mouth shapes), and a second thread's hand-over costs more than it saves. The body
# rotator and the editor (a keyframe, an exact still) take every core, at the workers' lower priority, so the
# frame thread still comes first (on this 2-core machine, one viewer, interleaved runs over HTTP):
#   keyframe 388 ms instead of 654 (+8 % CPU per keyframe: 0.57 core-seconds instead of 0.53), an exact
#   still 378-407 ms instead of 519-577, idle 0.30-0.34 cores either way, sway off 0.27-0.30 either way.
# The face morpher on two threads as well made stills no faster (372 ms) and the resting stream no cheaper.
ONE_THREAD = ("eyebrow_morphing_combiner", "face_morpher")


def smooth_backend_threads() -> dict[str, int]:
    """Threads per network for the smooth stream's backend (see ONE_THREAD)."""
    cores = backends.default_threads()
    return {name: 1 if name in ONE_THREAD else cores for name in backends.INPUT_SHAPES}


WORKER_NICENESS = 10  # how much nicer the workers are than the process (the frame thread keeps the process's)


def one_torch_thread() -> None:
    """Torch's thread count is per calling thread. The frame thread and the worker each keep theirs at one:
    two threads each on two cores made a 16 ms composite take 200 ms (they fight over the same cores).
    The backend (OpenVINO) runs the networks on its own threads."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def lower_priority() -> None:
    """Workers yield the cores to the frame thread: a frame is due every 40 ms, their work is ahead of the
    clock. WORKER_NICENESS below the calling thread's own priority (a server started with `nice` keeps its
    threads in the same order). (Linux: a thread is a task with its own nice value; elsewhere this does
    nothing.)"""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICENESS, 19))
    except (AttributeError, OSError) as e:
        log.debug("could not lower the worker thread's priority: %s", e)


def apply_backend(poser, name: str = "auto", *, threads: int | dict[str, int] | None = None):
    """backends.apply_backend for the smooth stream: `threads` per network (default: smooth_backend_threads()),
    compiled from a thread at the workers' priority. OpenVINO creates its inference threads when it compiles,
    and a Linux thread inherits the nice value of the thread that creates it; so the network runs, which do the
    workers' work, yield the cores to the frame thread as the workers do. (Lowering the workers' own threads alone did nothing for
    them: those only wait for the backend's.) With another process keeping one of the 2 cores busy, the
    stream kept 25.0 FPS idle and talking (fewer keyframes), against 23.8 with the network threads at the
    frame thread's priority."""
    outcome: dict = {}

    def compile_networks() -> None:
        lower_priority()
        try:
            outcome["poser"] = backends.apply_backend(poser, name, threads=threads or smooth_backend_threads())
        except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
            outcome["error"] = e

    thread = threading.Thread(target=compile_networks, name="talkinghead-compile")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["poser"]
