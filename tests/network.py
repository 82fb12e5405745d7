"""Helpers for the tests (and benches) that talk to real servers on loopback ports: a free port, a VMC packet
to send, a server run on a thread, waiting for a condition, stopping a server process (`from network import
free_port`; benches: `from tests.network import ...`)."""
from __future__ import annotations

import math
import socket
import subprocess
import threading
import time

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on loopback that nothing uses now: TCP, or UDP with socket.SOCK_DGRAM."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    """Whether `predicate()` became true within `timeout` s, asking every `step` s (and once more at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class RunningServer:
    """A made waitress server (`server.make_server`, or waitress's own) run on a thread: `url`, `port`;
    `close()` stops it."""

    def __init__(self, server):
        self.server, self.port = server, server.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=server.run, daemon=True)
        self.thread.start()

    def close(self):
        self.server.close()
        self.thread.join(timeout=5)


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Ask a server process to stop (SIGTERM: it closes its streams and exits); kill it if it has not within
    `timeout` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def vmc_head_bundle(yaw: float, roll: float = 0.0) -> bytes:
    """A VMC bundle: Neck at rest, Head turned `yaw` degrees about Unity's up axis, then rolled `roll` degrees,
    plus an empty blend Apply."""
    y, r = math.radians(yaw) / 2, math.radians(roll) / 2
    qy = (0.0, math.sin(y), 0.0, math.cos(y))
    qz = (0.0, 0.0, math.sin(r), math.cos(r))
    # qy · qz
    ax, ay, az, aw = qy
    bx, by, bz, bw = qz
    q = (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
         aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)
    bundle = OscBundleBuilder(IMMEDIATELY)
    for bone, rotation in (("Neck", (0.0, 0.0, 0.0, 1.0)), ("Head", q)):
        message = OscMessageBuilder("/VMC/Ext/Bone/Pos")
        message.add_arg(bone)
        for value in (0.0, 0.0, 0.0, *rotation):
            message.add_arg(float(value))
        bundle.add_content(message.build())
    bundle.add_content(OscMessageBuilder("/VMC/Ext/Blend/Apply").build())
    return bundle.build().dgram
