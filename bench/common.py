"""What the benchmarks share. A bench runs as a script (`python bench/NAME.py`), so its folder is on sys.path:
`from common import free_port`."""
from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on loopback that nothing uses now: TCP, or UDP with socket.SOCK_DGRAM."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
