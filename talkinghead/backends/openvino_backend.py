"""OpenVINO CPU backend: compiles an exported ONNX graph, runs it with one infer request.

Settings, and why:
- INFERENCE_PRECISION_HINT f32: on CPUs with AVX512-BF16 or AMX the CPU plugin defaults to bf16, which
  changes the output visibly (THA3's appearance flow is sensitive); f32 keeps frames equal to torch's.
- PERFORMANCE_HINT LATENCY: one stream, all threads on one request (we render one frame at a time).
- INFERENCE_NUM_THREADS: the same count torch uses (physical cores by default, honours OMP_NUM_THREADS /
  torch.set_num_threads), so the two thread pools do not oversubscribe the cores between stages.
- CACHE_DIR: OpenVINO stores the compiled model and imports it on the next start instead of compiling.
Instance norms are exported as explicit ops (rewrites.py): OpenVINO's own kernel for them is imprecise.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from .base import BackendNetwork
from .export import ExportedGraph

VERSION = ov.get_version().split("-")[0]
# OpenVINO's instance-norm kernel is imprecise on THA3's activations; see rewrites.py.
EXPORT_REWRITES = ("two_pass_instance_norm",)


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
            # share_inputs: OpenVINO reads our arrays in place. Outputs are copied: the request's own output
            # buffers are overwritten by the next call, and callers may keep a frame that long.
            result = self.request.infer(arrays, share_inputs=True, share_outputs=False)
            return list(result.to_tuple())
