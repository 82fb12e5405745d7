"""ONNX Runtime CPU backend: one InferenceSession per exported ONNX graph.

Settings, and why: all graph optimisations (constant folding, conv/activation fusion, layout transforms);
intra-op threads = the count torch uses (physical cores by default), one inter-op thread (the THA3 graphs
are a chain, there is nothing to run side by side); sequential execution; no spin-waiting: idle pool
threads that spin steal the cores from torch's glue between the networks and from the rest of the server
(on 2 loaded cores: median frame 1005 -> 729 ms, best 588 -> 469 ms).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .base import BackendNetwork
from .export import ExportedGraph

VERSION = ort.__version__
EXPORT_REWRITES: tuple[str, ...] = ()  # ONNX Runtime's InstanceNormalization matches torch to ~1e-6


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeNetwork(BackendNetwork):
    backend = "onnxruntime"

    def __init__(self, graph: ExportedGraph, name: str, *, threads: int):
        super().__init__(graph, name)
        self.session = ort.InferenceSession(str(graph.path), session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.input_names, arrays)))  # Run is thread-safe
