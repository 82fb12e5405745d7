"""The built-in classifier's encoder on OpenVINO: the same features as torch's, in less CPU time.

Why: on a server that also streams, a classify call waits for a core longer than it computes, so its
latency scales with the CPU time it needs. Measured with `bench.bench_viewers` (60 viewers, calls every 0.1 s,
this 2-core machine), torch: 14 ms of CPU per call, and 10-30 ms more queued behind the frame thread and the
encoder (the thread's run-queue time, /proc/<tid>/schedstat; waits for the GIL were under 1 ms; as an
experiment, the request thread at nice -10, which needs root, cut the queueing to ~3 ms, the viewers' threads
at nice +5 made no difference beyond the noise); classify p50 25-32 ms, p99 45-65 ms (four 60 s runs). On
OpenVINO: 8.5 ms of CPU, p50 14-16 ms, p99 25-36 ms (four runs interleaved with those). One message at a time
(`bench.bench_classify`, 207 held-out lines, load average ~1.1): median 14.8 ms on torch (82 % of it in the
matrix products, the rest PyTorch's per-op overhead), 10.2-10.7 ms here. A warm start takes 0.9 s instead of
2.1 s (no torch model to load); the server's RSS after a classify, 1321 MB against 1287 MB. Same weights in
f32 (CPU precision hint f32, the IR saved without fp16 compression): the features match torch's to 3e-7 and
the labels are the same (tests/test_classify_openvino.py).

Exported once from the torch module (`embedding.PooledFeatures`, dynamic batch and length) with
`ov.convert_model`, saved as OpenVINO IR in the cache folder (classify-encoder-<key>.xml and .bin, 90 MB);
later starts compile the IR (~0.3 s) and never load the torch model. The key covers the model files, the
pooled layers, the export code and the versions of OpenVINO, torch and transformers.

Threads: one infer request, used by one caller at a time (SentenceEmbedder's callers serialise). It runs on the
calling thread (one inference thread), so it has the calling request thread's priority.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

THREADS = 1  # classifier/cpu.py: more threads only wait on each other when the stream holds a core


def cache_key(model_dir: Path, layers: tuple[int, ...]) -> str:
    import openvino as ov
    import transformers

    from classifier import embedding

    digest = hashlib.sha256()
    for part in (embedding.model_fingerprint(model_dir), repr(layers), inspect.getsource(embedding.PooledFeatures),
                 ov.get_version(), torch.__version__, transformers.__version__):
        digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()[:16]


class OpenVinoFeatures:
    """Token ids and attention mask (int64 arrays, batch × tokens) → features (float32 tensor), as
    `PooledFeatures` computes them."""

    def __init__(self, compiled):
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> torch.Tensor:
        self._request.infer([input_ids, attention_mask])
        # A copy: the request's output buffer is overwritten by the next call.
        return torch.from_numpy(self._request.get_output_tensor(0).data.copy())


def load(model_dir: Path, layers: tuple[int, ...], cache_dir: Path | None,
         torch_module: Callable[[], nn.Module], example: tuple[torch.Tensor, torch.Tensor]) -> OpenVinoFeatures:
    """The compiled features: from the cached IR, else exported from `torch_module()` (cached when `cache_dir`
    is given). Raises whatever OpenVINO or the export raises."""
    from talkinghead.backends.openvino_backend import compile_config, core

    started = time.perf_counter()
    path = cache_dir / f"classify-encoder-{cache_key(model_dir, layers)}.xml" if cache_dir else None
    if path is not None and path.is_file():
        source = f"from {path}"
        model = str(path)
    else:
        model = _export(torch_module(), example)
        source = f"exported in {time.perf_counter() - started:.1f} s"
        if path is not None and _save(model, path):
            source += f", cached in {path}"
            model = str(path)  # compiled as every later start will (from memory it differs in the 7th digit)
    compiled = core().compile_model(model, "CPU", compile_config(THREADS, None))
    log.info("classify encoder on OpenVINO %s in %.2f s", source, time.perf_counter() - started)
    return OpenVinoFeatures(compiled)


def _export(module: nn.Module, example: tuple[torch.Tensor, torch.Tensor]):
    import openvino as ov

    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about shape checks inside transformers' attention masks; the dynamic dimensions
        # below keep them general, and tests/test_classify_openvino.py checks other lengths and batch sizes.
        warnings.simplefilter("ignore")
        return ov.convert_model(module.eval(), example_input=example,
                                input=[("input_ids", [-1, -1], ov.Type.i64),
                                       ("attention_mask", [-1, -1], ov.Type.i64)])


def _save(model, path: Path) -> bool:
    """Write the IR next to `path`, then move it in (.bin first: a reader that finds the .xml has both)."""
    import openvino as ov

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".classify-encoder-") as tmp:
            temp = Path(tmp) / "encoder.xml"
            ov.save_model(model, temp, compress_to_fp16=False)  # f32, as torch's weights
            os.replace(temp.with_suffix(".bin"), path.with_suffix(".bin"))
            os.replace(temp, path)
        return True
    except OSError as e:
        log.warning("cannot cache the classify encoder in %s (%s); it will be exported again next start",
                    path.parent, e)
        return False
