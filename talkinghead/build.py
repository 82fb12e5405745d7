"""Building the engine for a server: the networks on the real weights (variant, device, backend), the shared
engine around them, and the first avatar with the default character, started.

    engine = build_engine(gpu=False, model="auto", models_dir=None, backend="auto", idle_seconds=5.0,
                          keyframes="data/cache/keyframes")   # the default avatar; engine.shared: what all share

Every failure is a BuildError whose message is one line saying what to do (the server prints it and exits).
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

VARIANTS = ("auto", "separable_float", "separable_half", "standard_float", "standard_half")


class BuildError(RuntimeError):
    """The engine cannot start (missing weights, no CUDA, a backend that cannot run). One line, for the user."""


def pick_variant(requested: str, gpu: bool) -> str:
    """auto: separable_half on a GPU, separable_float on a CPU."""
    if requested == "auto":
        return "separable_half" if gpu else "separable_float"
    return requested


def build_engine(*, gpu: bool = False, model: str = "auto", models_dir: str | Path | None = None,
                 backend: str = "auto", idle_seconds: float | None = 5.0, keyframes: str | Path | None = None):
    """The server's first avatar (a started TalkingHead) on newly loaded networks. idle_seconds: without a
    viewer this long an avatar stops rendering (0 or None: never). keyframes: the folder where the CPU stream
    keeps each character's keyframes (None: not kept)."""
    import torch

    from talkinghead import weights
    from talkinghead.engine import TalkingHead
    from talkinghead.image import load_character
    from talkinghead.tha3.poser import Poser

    if gpu and not torch.cuda.is_available():
        raise BuildError("--talkinghead-gpu was given but PyTorch sees no CUDA device "
                         f"(torch {torch.__version__}); drop the flag to run on the CPU")
    device = "cuda" if gpu else "cpu"
    variant = pick_variant(model, gpu)
    models_dir = Path(models_dir) if models_dir else weights.MODELS_DIR
    try:
        poser = Poser.load(models_dir, variant, device)
    except weights.WeightsError as e:
        raise BuildError(str(e)) from None
    if not weights.DEFAULT_CHARACTER.is_file():
        raise BuildError(f"default character {weights.DEFAULT_CHARACTER} is missing: "
                         "run `python -m talkinghead.weights` to fetch it")
    first_character = load_character(weights.DEFAULT_CHARACTER.read_bytes())
    chosen = _apply_backend(poser, backend, first_character)
    # On a CPU exact frames take ~0.3 s or more: stream frames blended from exact keyframes, kept by pose.
    smooth = device == "cpu"
    disk = None
    if smooth and keyframes:
        from talkinghead.smooth.disk import KeyframeDisk
        disk = KeyframeDisk(keyframes, model=f"{variant}/{chosen}")
    engine = TalkingHead(poser, smooth=smooth, idle_after=idle_seconds or None, keyframe_disk=disk,
                         description={"backend": chosen, "device": device, "model": variant,
                                      "models_dir": str(models_dir)})
    engine.start(first_character)
    log.info("talkinghead ready: %s on %s (%s backend), default character %s",
             variant, device, chosen, weights.DEFAULT_CHARACTER.name)
    return engine


def _apply_backend(poser, name: str, character) -> str:
    """Run the networks on the chosen backend; returns what actually runs them (for stats and logs)."""
    import numpy as np

    from talkinghead import backends

    try:
        chosen = backends.resolve(name, poser.device)
        if poser.device.type == "cuda":
            if name == "auto":  # launch-bound at batch 1: compiling fuses kernels (~1.5x on an H200)
                from talkinghead.backends.cuda_compile import compile_for_cuda

                poser.set_image(character)
                compile_for_cuda(poser, warm_pose=np.zeros(45, np.float32))
                return "torch.compile"
            return "torch"
        from talkinghead import smooth  # the CPU streams in smooth mode

        smooth.apply_backend(poser, chosen)
    except backends.BackendError as e:
        raise BuildError(str(e)) from None
    return backends.active_backend(poser)
