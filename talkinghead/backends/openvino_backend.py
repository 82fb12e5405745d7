"""OpenVINO CPU backend: compiles an exported ONNX graph, runs it with one infer request.

Settings, and why:
- INFERENCE_PRECISION_HINT f32: on CPUs with AVX512-BF16 or AMX the CPU plugin defaults to bf16, which
  changes the output visibly (THA3's appearance flow is sensitive); f32 keeps frames equal to torch's.
- PERFORMANCE_HINT LATENCY: one stream, all threads on one request (we render one frame at a time).
- INFERENCE_NUM_THREADS: the same count torch uses (physical cores by default, honours OMP_NUM_THREADS /
  torch.set_num_threads), so the two thread pools do not oversubscribe the cores between stages.
- CACHE_DIR: OpenVINO stores the compiled model and imports it on the next start instead of compiling.
Tried on 2 cores, no measurable effect on frame time (interleaved runs, +-5 %): CPU_DENORMALS_OPTIMIZATION,
ENABLE_CPU_PINNING on or off, THROUGHPUT mode with one stream. One inference thread: -5 % CPU time but
+45 % wall time per frame.
Export-time rewrites (rewrites.py), same functions spelled with ops OpenVINO runs better: instance norms as
explicit ops (OpenVINO's own kernel for them is imprecise), upsample + conv as transposed convs, the output
heads of a network as one conv.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from .base import BackendNetwork, Cancelled
from .export import ExportedGraph

VERSION = ov.get_version().split("-")[0]
# OpenVINO's instance-norm kernel is imprecise on THA3's activations; the other two, and the multiply-add
# form of the norm, are for speed: editor -24 %, rotator -12 %, face morpher -24 % (see rewrites.py).
EXPORT_REWRITES = ("two_pass_instance_norm", "resize_conv_as_transposed", "merged_heads")


@functools.cache
def core() -> ov.Core:
    return ov.Core()  # one per process: it holds the plugin and its caches


def compile_config(threads: int, cache_dir: Path | None) -> dict:
    config = {
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        hints.inference_precision: ov.Type.f32,
        props.inference_num_threads: threads,
    }
    if cache_dir is not None:
        config[props.cache_dir] = str(cache_dir)
    return config


class OpenVinoNetwork(BackendNetwork):
    backend = "openvino"

    def __init__(self, graph: ExportedGraph, name: str, *, threads: int, cache_dir: Path | None = None):
        super().__init__(graph, name)
        self.compiled = core().compile_model(str(graph.path), "CPU", compile_config(threads, cache_dir))
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request serves one caller at a time

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            # share_inputs: OpenVINO reads our arrays in place. Run asynchronously and wait, so that
            # `cancel` can stop it from another thread (the CPU plugin stops between layers).
            self.request.start_async(arrays, share_inputs=True)
            if self.refusing:  # a sticky cancel() came just before the start: it found nothing to stop
                self.request.cancel()
            try:
                self.request.wait()
            except RuntimeError as e:
                if "cancel" in str(e).lower():
                    raise Cancelled(self.name) from None
                raise
            # Outputs are copied: the request's own buffers are overwritten by the next call, and callers
            # may keep a frame that long.
            return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]

    def _cancel_run(self) -> None:
        self.request.cancel()  # a no-op when nothing runs
