"""On CUDA, THA3 at batch 1 is bound by kernel launches, not by the GPU: eager fp16 runs ~75 FPS on an H200
(bench/bench_gpu.py). torch.compile fuses the small kernels.

CUDA graphs (mode="reduce-overhead") reached ~230 FPS in the benchmark, but their recordings belong to the
thread that made them: in the server, where the render thread, HTTP threads (/render) and start-up all run
the poser, they failed ("already recording to mempool_id"). So the server compiles without them."""
from __future__ import annotations

import logging
import time

import torch

log = logging.getLogger(__name__)

MODE = "default"  # max-autotune would spend minutes tuning at every start


def compile_for_cuda(poser, warm_pose=None) -> None:
    """Compile the poser's per-frame networks in place and warm them up (the first frames compile)."""
    started = time.perf_counter()
    log.info("compiling the THA3 networks for CUDA (torch.compile): a minute or two, once per start")
    for name, net in list(poser.networks.items()):
        if name != "eyebrow_decomposer":  # runs once per character image: not worth compiling
            poser.networks[name] = torch.compile(net, mode=MODE)
    if warm_pose is not None:
        poser.render(warm_pose)
    log.info("compiled in %.1f s", time.perf_counter() - started)
