"""Give freed memory back to the operating system.

The engine's threads allocate and free many 2-10 MB tensors (frames, keyframes, faces). glibc serves those
from per-thread heaps once its mmap threshold has adapted upwards, and keeps what is freed there, so the
resident size creeps up by hundreds of MB over a chat. `malloc_trim` hands the free pages back. (Fixing the
mmap threshold instead keeps the size down too, but then every frame's tensors are fresh zeroed pages:
the frame rate halved on 2 cores.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
import time

log = logging.getLogger(__name__)


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_last_release = [0.0]
_release_lock = threading.Lock()
MIN_INTERVAL = 5.0  # seconds: a trim makes the next allocations fault their pages in again, so not too often


def release_free_memory() -> None:
    """Return the allocator's free pages to the OS (glibc; elsewhere nothing to do), at most every
    MIN_INTERVAL seconds; a call within the interval is carried out once at its end (a burst of exact stills
    leaves its temporaries behind otherwise)."""
    libc = _libc()
    if libc is None:
        return
    with _release_lock:
        now = time.monotonic()
        wait = _last_release[0] + MIN_INTERVAL - now
        if wait > 0:
            if not _pending[0]:
                _pending[0] = True
                timer = threading.Timer(wait, _deferred_release)
                timer.daemon = True
                timer.start()
            return
        _last_release[0] = now
    _trim(libc)


_pending = [False]  # a deferred release is scheduled (guarded by _release_lock)


def _deferred_release() -> None:
    with _release_lock:
        _pending[0] = False
        _last_release[0] = time.monotonic()
    _trim(_libc())


def _trim(libc) -> None:
    started = time.perf_counter()
    libc.malloc_trim(0)
    log.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1000)
