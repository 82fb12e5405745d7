"""Where an exported THA3 network spends its time in OpenVINO: per layer type and kernel, on this CPU.

    python -m bench.profile_openvino [editor|two_algo_face_body_rotator|face_morpher|...] [--threads 2]

Takes the network's export as the server makes it (same rewrites; from data/cache/backends when there),
compiles it with the server's settings plus profiling, runs it on random inputs, and prints the mean ms
per (layer type, kernel) over 5 runs, largest first. A kernel name like brgconv_avx512_1x1_f32 says
which instruction set and algorithm the CPU plugin picked.
"""
from __future__ import annotations

import argparse
import collections
import sys

import numpy as np
import openvino as ov
import openvino.properties as props

from talkinghead import backends, weights
from talkinghead.backends.export import export_onnx
from talkinghead.backends.openvino_backend import EXPORT_REWRITES, compile_config
from talkinghead.tha3.poser import Poser

RUNS = 5


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("network", nargs="?", default="editor")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    graph = export_onnx(poser.networks[args.network], backends.example_inputs(args.network), name=args.network,
                        variant="separable_float", rewrites=EXPORT_REWRITES)
    config = {**compile_config(args.threads, None), props.enable_profiling: True}
    compiled = ov.Core().compile_model(str(graph.path), "CPU", config)
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, [d.get_length() for d in i.get_partial_shape()]).astype(np.float32)
              for i in compiled.inputs]
    for _ in range(3):  # warm-up
        request.infer(inputs)
    ms, count = collections.defaultdict(float), collections.Counter()
    for _ in range(RUNS):
        request.infer(inputs)
        for layer in request.profiling_info:
            key = (layer.node_type, layer.exec_type)
            ms[key] += layer.real_time.total_seconds() * 1000 / RUNS
            count[key] += 1
    print(f"{graph.path.name}, {args.threads} threads: {sum(ms.values()):.1f} ms per run\n")
    print("| ms | layers | layer type | kernel |\n|---:|---:|---|---|")
    for (node, kernel), value in sorted(ms.items(), key=lambda kv: -kv[1]):
        if value >= 0.05:
            print(f"| {value:.1f} | {count[node, kernel] // RUNS} | {node} | {kernel} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
