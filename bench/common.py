"""What the benchmarks share: `from bench.common import free_port, stop_process, wait_for, keyframe_folder`.
(A bench runs from the repository root as `python -m bench.NAME`, so `bench`, `tests` and the server's own
packages import as they are.)"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from tests.network import free_port, stop_process, wait_for  # the tests' helpers, so there is one copy

__all__ = ["free_port", "stop_process", "wait_for", "keyframe_folder"]


@contextlib.contextmanager
def keyframe_folder(keep: str | None, prefix: str):
    """The server's keyframe folder for a bench: `keep` (used and kept), or a new empty one, removed after."""
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
