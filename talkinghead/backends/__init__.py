"""Inference backends for the THA3 networks: torch (eager), OpenVINO or ONNX Runtime.

    backend = resolve(config.talkinghead_backend, device)   # "auto" -> the fastest one installed
    poser = apply_backend(Poser.load(...), backend)         # swaps poser.networks for backend-run stand-ins

A non-torch backend exports each network once to ONNX (cached under data/cache/backends, see export.py)
and runs it through a stand-in module with the torch module's call signature and outputs, so the poser's
code does not change. They run on the CPU only; on CUDA, torch is the fast path.
"""
from __future__ import annotations

import functools
import importlib
import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .base import BackendNetwork, Cancelled
from .export import DEFAULT_CACHE_DIR, backend_cache_dir, export_onnx

log = logging.getLogger(__name__)

BACKENDS = ("torch", "openvino", "onnxruntime")
# auto on the CPU takes the first installed one. On 2 cores of an AMD EPYC (bench/bench_backends.py, frames
# matching torch to 1e-4, random poses): OpenVINO 3.5x the stock eager poser, ONNX Runtime 2.2x, our eager torch 1.1x.
AUTO_CPU_ORDER = ("openvino", "onnxruntime", "torch")
# Non-torch backends also need the exporter's dependencies.
REQUIREMENTS = {"openvino": ("openvino", "onnx", "onnxscript"),
                "onnxruntime": ("onnxruntime", "onnx", "onnxscript")}
PIP_HINT = {"openvino": "pip install openvino onnx onnxscript",
            "onnxruntime": "pip install onnxruntime onnx onnxscript"}

# Batch-1 input shapes of the THA3 networks, fixed by the architecture and the poser's crops.
INPUT_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "eyebrow_decomposer": ((1, 4, 128, 128),),
    "eyebrow_morphing_combiner": ((1, 4, 128, 128), (1, 4, 128, 128), (1, 12)),
    "face_morpher": ((1, 4, 192, 192), (1, 27)),
    "two_algo_face_body_rotator": ((1, 4, 256, 256), (1, 6)),
    "editor": ((1, 4, 512, 512), (1, 4, 512, 512), (1, 2, 512, 512), (1, 6)),
}
# Runs once per character image, not per frame: exporting and compiling it would only slow the start.
KEEP_IN_TORCH = ("eyebrow_decomposer",)


class BackendError(RuntimeError):
    """An unknown, uninstalled or unsuitable backend was asked for. The message says what to do."""


@functools.cache
def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001 - a broken install (missing shared library, ...) counts as absent
        return False


def available_backends() -> list[str]:
    """The backends that can run here, in BACKENDS order; torch always can."""
    return [b for b in BACKENDS if all(_importable(m) for m in REQUIREMENTS.get(b, ()))]


def resolve(name: str, device: torch.device | str = "cpu") -> str:
    """The backend to use for `name` ("auto" or one of BACKENDS) on `device`; BackendError if impossible."""
    if name != "auto" and name not in BACKENDS:
        raise BackendError(f"unknown talkinghead backend {name!r}; choose auto, {', '.join(BACKENDS)}")
    if torch.device(device).type != "cpu":
        if name in ("auto", "torch"):
            return "torch"
        raise BackendError(f"the {name} backend runs on the CPU; with --talkinghead-gpu use "
                           f"--talkinghead-backend torch (or auto)")
    available = available_backends()
    if name == "auto":
        return next(b for b in AUTO_CPU_ORDER if b in available)
    if name not in available:
        raise BackendError(f"the {name} backend is not installed: {PIP_HINT[name]}")
    return name


def default_threads() -> int:
    """torch's intra-op thread count: physical cores unless OMP_NUM_THREADS or torch.set_num_threads say
    otherwise. Backends use the same count so that they and torch's glue code share the cores evenly."""
    return torch.get_num_threads()


def wrap_network(module: nn.Module, example_inputs: Sequence[Tensor], backend: str, *, name: str,
                 variant: str = "unknown", cache_dir: Path | str = DEFAULT_CACHE_DIR,
                 threads: int | None = None, rewrites: Sequence[str] | None = None) -> nn.Module:
    """`module` run by `backend` (torch: the module itself), for inputs shaped like `example_inputs`.
    `rewrites`: export-time rewrites (rewrites.py); None takes the backend's own default."""
    if backend == "torch":
        return module
    if backend not in BACKENDS:
        raise BackendError(f"unknown talkinghead backend {backend!r}")
    start = time.perf_counter()
    threads = threads or default_threads()
    if backend == "openvino":
        from . import openvino_backend as impl
    else:
        from . import onnxruntime_backend as impl
    rewrites = impl.EXPORT_REWRITES if rewrites is None else tuple(rewrites)
    graph = export_onnx(module, example_inputs, name=name, variant=variant, cache_dir=cache_dir,
                        rewrites=rewrites)
    if backend == "openvino":
        wrapped = impl.OpenVinoNetwork(graph, name, threads=threads,
                                       cache_dir=backend_cache_dir(cache_dir, backend, impl.VERSION))
    else:
        wrapped = impl.OnnxRuntimeNetwork(graph, name, threads=threads)
    log.info("%s: %s ready in %.1f s (%d threads)", name, backend, time.perf_counter() - start, threads)
    return wrapped


def example_inputs(name: str) -> tuple[Tensor, ...]:
    # Values do not matter to the exporter (the graphs have no data-dependent control flow), shapes do.
    return tuple(torch.zeros(shape) for shape in INPUT_SHAPES[name])


def apply_backend(poser, backend: str = "auto", *, cache_dir: Path | str = DEFAULT_CACHE_DIR,
                  keep_in_torch: Sequence[str] = KEEP_IN_TORCH, threads: int | Mapping[str, int] | None = None):
    """Run the poser's networks on `backend` (resolved for poser.device): replaces the entries of
    `poser.networks` (name -> nn.Module) in place, except `keep_in_torch`, and returns the poser.
    `threads`: per network (one count for all, or network name -> count; a network not named, and None,
    take default_threads()).

    All networks are swapped or none. If the setup fails (export error, unwritable cache, ...), "auto"
    keeps torch and logs a warning; an explicitly named backend raises BackendError."""
    chosen = resolve(backend, poser.device)
    if chosen == "torch":
        return poser
    variant = getattr(poser, "variant", None) or "unknown"
    try:
        wrapped = {name: wrap_network(module, example_inputs(name), chosen, name=name, variant=variant,
                                      cache_dir=cache_dir,
                                      threads=threads.get(name) if isinstance(threads, Mapping) else threads)
                   for name, module in poser.networks.items()
                   if name not in keep_in_torch and not isinstance(module, BackendNetwork)}
    except Exception as e:  # noqa: BLE001 - exporters and backends fail in many ways
        if backend != "auto":
            raise BackendError(f"could not set up the {chosen} backend: {type(e).__name__}: {e}") from e
        log.warning("the %s backend could not be set up (%s: %s); running the poser on torch",
                    chosen, type(e).__name__, e)
        return poser
    poser.networks.update(wrapped)
    return poser


def cancel_runs(poser, names: Sequence[str], *, sticky: bool = False) -> None:
    """Stop the runs in progress of these networks, where the backend can (they raise Cancelled); sticky:
    and any run started until reset_cancels() (see BackendNetwork.cancel)."""
    for network in _backend_networks(poser, names):
        network.cancel(sticky=sticky)


def reset_cancels(poser, names: Sequence[str]) -> None:
    """These networks accept runs again after a sticky cancel_runs()."""
    for network in _backend_networks(poser, names):
        network.reset_cancel()


def _backend_networks(poser, names: Sequence[str]) -> list[BackendNetwork]:
    return [n for n in (poser.networks.get(name) for name in names) if isinstance(n, BackendNetwork)]


def active_backend(poser) -> str:
    """The backend the poser's per-frame networks run on."""
    return next((n.backend for n in poser.networks.values() if isinstance(n, BackendNetwork)), "torch")


__all__ = ["BACKENDS", "BackendError", "BackendNetwork", "Cancelled", "INPUT_SHAPES", "KEEP_IN_TORCH", "active_backend",
           "apply_backend", "available_backends", "cancel_runs", "default_threads", "example_inputs", "reset_cancels",
           "resolve", "wrap_network"]
