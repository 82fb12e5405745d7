"""Why classification runs on one CPU thread.

A chat message is a tiny workload (≈20 tokens). Split over PyTorch's intra-op threads, every layer ends in a
barrier that waits for the slowest thread, and when another process or the talkinghead renderer holds a core
that wait is a scheduler time slice: measured here, 34 ms median / 190 ms worst with 2 threads and one core busy
versus 18 ms / 25 ms on one thread (15 ms either way on an idle machine). Fitting the built-in head is no
different: 6 s + 0.4 s on one thread against 16 s + 7 s on two, on a machine with other work running.
The encoder runs on OpenVINO on the CPU, with one inference thread for the same reason (openvino_features.py);
torch serves it on CUDA, or when OpenVINO cannot.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def one_cpu_thread():
    """Run the block with one intra-op thread on *this* thread, then restore its count.

    PyTorch (OpenMP/MKL) keeps the count per thread, so other threads (the renderer) keep theirs; only a
    thread that initialises its pool during the block would inherit 1.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
