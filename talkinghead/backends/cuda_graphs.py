"""On CUDA, THA3 at batch 1 is bound by kernel launches, not the GPU: eager fp16 runs ~75 FPS on an H200,
torch.compile with CUDA graphs ~230 FPS (bench/bench_gpu.py). This compiles the per-frame networks so."""
from __future__ import annotations

import logging
import time

import torch
from torch import nn

log = logging.getLogger(__name__)


class _Compiled(nn.Module):
    """A network compiled with CUDA graphs. A graph replays into the same output buffers every time, so the
    outputs are cloned: a caller may keep them (per-stage caches) while the graph runs again."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self._compiled = torch.compile(module, mode="reduce-overhead")

    def forward(self, *inputs):
        return torch.utils._pytree.tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t,
                                            self._compiled(*inputs))


def compile_for_cuda(poser, warm_pose=None) -> None:
    """Compile the poser's per-frame networks in place and warm them up (the first frames compile)."""
    started = time.perf_counter()
    log.info("compiling the THA3 networks for CUDA (torch.compile, CUDA graphs): about a minute, once per start")
    for name, net in list(poser.networks.items()):
        if name != "eyebrow_decomposer":  # runs once per character image: not worth a graph
            poser.networks[name] = _Compiled(net)
    if warm_pose is not None:
        for _ in range(3):  # cudagraph trees record on the third call
            poser.render(warm_pose)
    log.info("compiled in %.1f s", time.perf_counter() - started)
