"""Export one network to ONNX with the torch.onnx dynamo exporter, cached on disk.

The ONNX file is a function of the network's code and weights, its (fixed, batch 1) input shapes, the
torch version and the opset, so those make the cache key; a restart finds the file and skips the export. The backends (OpenVINO, ONNX Runtime) read the same file; what they compile from it they cache
under their own name and version (see `backend_cache_dir`).

The flat list of ONNX outputs is regrouped into the module's own return structure (a tensor, a tuple of
tensors, ...) with the pytree spec that torch.export recorded; it travels inside the ONNX file as metadata,
so one atomic file is the whole cache entry.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from .. import weights
from .rewrites import REWRITES

log = logging.getLogger(__name__)

# The legacy TorchScript exporter fails on affine_grid below opset 20; the dynamo exporter at opset 20
# exports every THA3 network (grid_sample becomes GridSample, in ONNX since opset 16).
OPSET = 20
DEFAULT_CACHE_DIR = weights.DATA_DIR / "cache" / "backends"
OUTPUT_SPEC_KEY = "talkinghead.output_spec"
TORCH_DIR = Path(torch.__file__).parent


@dataclass(frozen=True)
class ExportedGraph:
    path: Path
    output_spec: pytree.TreeSpec  # regroups the flat ONNX outputs like the module's own return value

    def regroup(self, flat_outputs: list) -> object:
        return pytree.tree_unflatten(flat_outputs, self.output_spec)


def weights_hash(module: nn.Module) -> str:
    """SHA-256 of the state dict's names, dtypes, shapes and bytes: a cast or retrained variant changes it."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def code_hash(module: nn.Module) -> str:
    """SHA-256 of the source files defining the module's layers (torch's own are covered by its version):
    an edited forward() must not be served from a graph exported before the edit."""
    return _files_hash(type(layer) for layer in module.modules())


def _files_hash(objects) -> str:
    files = set()
    for obj in objects:
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:  # defined in C: nothing to hash
            continue
        if path and Path(path).is_file() and not Path(path).is_relative_to(TORCH_DIR):
            files.add(Path(path))
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()};".encode())
    return digest.hexdigest()


def cache_key(name: str, variant: str, module: nn.Module, example_inputs: Sequence[Tensor],
              opset: int = OPSET, rewrites: Sequence[str] = ()) -> str:
    """Everything the exported graph depends on, hashed; the variant is only there for readable logs."""
    parts = {
        "network": name, "variant": variant, "code": code_hash(module), "weights": weights_hash(module),
        "inputs": [[str(t.dtype), list(t.shape)] for t in example_inputs],
        "torch": torch.__version__, "opset": opset, "exporter": "dynamo", "rewrites": list(rewrites),
        "rewrites_code": _files_hash(REWRITES[r] for r in rewrites),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def export_onnx(module: nn.Module, example_inputs: Sequence[Tensor], *, name: str, variant: str = "unknown",
                cache_dir: Path | str = DEFAULT_CACHE_DIR, opset: int = OPSET,
                rewrites: Sequence[str] = ()) -> ExportedGraph:
    """The ONNX graph of `module` for inputs shaped like `example_inputs`, exported once and then reused.
    `rewrites` name export-time module rewrites (see rewrites.py) applied to a copy before exporting."""
    example_inputs = tuple(example_inputs)
    key = cache_key(name, variant, module, example_inputs, opset, rewrites)
    path = Path(cache_dir) / "onnx" / f"{name}-{key}.onnx"
    if path.is_file():
        try:
            return ExportedGraph(path, read_output_spec(path))
        except Exception as e:  # noqa: BLE001 - a damaged cache entry is re-exported, not fatal
            log.warning("cached ONNX graph %s is unreadable (%s); exporting again", path, e)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s (%s%s) to ONNX opset %d (once; cached in %s) ...", name, variant,
             "".join(f", {r}" for r in rewrites), opset, path.parent)
    start = time.perf_counter()
    for rewrite in rewrites:
        module = REWRITES[rewrite](module)
    # torch.export cannot trace inference tensors, and callers may sit inside torch.inference_mode().
    with torch.inference_mode(False), torch.no_grad(), _quiet_exporter():
        inputs = tuple(t.clone() for t in example_inputs)
        program = torch.onnx.export(module.eval(), inputs, dynamo=True, opset_version=opset, verbose=False)
    spec = program.exported_program.call_spec.out_spec
    program.model.metadata_props[OUTPUT_SPEC_KEY] = pytree.treespec_dumps(spec)
    # Write under a temporary name and rename: a crash or a second process never leaves a torn file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%s) to ONNX in %.1f s: %s (%.1f MB)", name, variant,
             time.perf_counter() - start, path.name, path.stat().st_size / 1e6)
    return ExportedGraph(path, spec)


def read_output_spec(path: Path) -> pytree.TreeSpec:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    return pytree.treespec_loads(props[OUTPUT_SPEC_KEY])


def backend_cache_dir(cache_dir: Path | str, backend: str, version: str) -> Path:
    """Where a backend keeps what it compiles from the ONNX files; a new backend version starts afresh."""
    return Path(cache_dir) / f"{backend}-{version}"


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns about optional torchvision ops and deprecated pytree calls inside torch itself,
    and its graph optimiser logs every rewrite at INFO; none of it concerns our networks, so keep it out of
    the server log (our own lines say what is exported and how long it took)."""
    loggers = {name: logging.getLogger(name) for name in
               ("torch.onnx._internal.exporter._registration", "onnxscript", "onnx_ir")}
    levels = {name: logger.level for name, logger in loggers.items()}
    for logger in loggers.values():
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
