"""What every non-torch backend shares: a stand-in nn.Module that takes and returns torch tensors."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .export import ExportedGraph


class Cancelled(RuntimeError):
    """A network run was cancelled from another thread (its result was no longer wanted)."""


class BackendNetwork(nn.Module):
    """Runs an exported graph in place of the torch module it came from: same call signature, same
    return structure (a tensor, a tuple of tensors, ...), float32 CPU tensors out. Subclasses implement
    `run(arrays) -> arrays` on contiguous float32 numpy arrays, one per graph input / output, in order.

    It is an nn.Module (without parameters) so that code typed for `dict[str, nn.Module]` keeps working."""

    backend = "?"

    def __init__(self, graph: ExportedGraph, name: str):
        super().__init__()
        self.graph = graph
        self.name = name
        self.refusing = False  # a sticky cancel() is in force: runs raise Cancelled until reset_cancel()

    def forward(self, *inputs: Tensor):
        if self.refusing:
            raise Cancelled(self.name)
        # numpy views share memory with the (CPU, float32, contiguous) tensors: no copy on the way in.
        arrays = [np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy()) for t in inputs]
        return self.graph.regroup([torch.from_numpy(a) for a in self.run(arrays)])

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def cancel(self, *, sticky: bool = False) -> None:
        """Stop the run in progress, if any, from another thread: it raises Cancelled. Backends that can't
        stop a run let it finish. sticky: runs started from now on raise Cancelled too, until reset_cancel()
        (a caller that checked "still wanted?" just before its run would otherwise start it anyway)."""
        if sticky:
            self.refusing = True
        self._cancel_run()

    def reset_cancel(self) -> None:
        """Runs are accepted again after a sticky cancel()."""
        self.refusing = False

    def _cancel_run(self) -> None:
        """Stop the run in progress, if the backend can."""

    def extra_repr(self) -> str:
        return f"{self.name}, backend={self.backend}, graph={self.graph.path.name}"
