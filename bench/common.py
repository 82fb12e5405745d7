"""What the benchmarks share: `from bench.common import free_port, stop_process`. (A bench runs from the
repository root as `python -m bench.NAME`, so `bench`, `tests` and the server's own packages import as they
are.)"""
from __future__ import annotations

from tests.network import free_port, stop_process  # the tests' helpers, so there is one copy

__all__ = ["free_port", "stop_process"]
