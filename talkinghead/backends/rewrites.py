"""Export-time rewrites of a torch module, for a backend's sake. The torch module itself is never changed.

Two-pass instance norm, for OpenVINO: OpenVINO's CPU kernel for InstanceNormalization (its MVN op) loses
precision on THA3's activations: ~1e-4 relative error per norm layer, where torch and ONNX Runtime stay
near 1e-6 (measured on the rotator's first norm with the real weights and character). The rotator's
appearance flow turns that into up to ~6e-3 on alpha edges of the final frame. Spelled out as
mean -> centre -> mean of squares -> rsqrt, OpenVINO keeps the ops as they are (it does not fuse them back
into MVN) and matches torch to ~5e-5, at ~10-15 % more time for those networks.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class TwoPassInstanceNorm(nn.Module):
    """nn.InstanceNorm2d (eval, no running stats) as explicit ops: variance from centred values."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        if norm.track_running_stats:
            raise ValueError("TwoPassInstanceNorm replaces instance norms without running statistics only")
        self.eps = norm.eps
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        y = centred * torch.rsqrt((centred * centred).mean(dim=(2, 3), keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y


def with_two_pass_instance_norm(module: nn.Module) -> nn.Module:
    """A copy of `module` whose nn.InstanceNorm2d layers are TwoPassInstanceNorm (same parameters)."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d):
                setattr(parent, child_name, TwoPassInstanceNorm(child))
    return module


# name -> rewrite; the name goes into the export cache key.
REWRITES = {"two_pass_instance_norm": with_two_pass_instance_norm}
