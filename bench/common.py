"""What the benchmarks share. A bench runs as a script (`python bench/NAME.py`), so its folder is on sys.path:
`from common import free_port`."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
