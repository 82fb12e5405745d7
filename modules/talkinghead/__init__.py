"""The talkinghead module: builds the engine (poser on the real weights + animator + renderer) and its routes."""
from __future__ import annotations

import atexit
import logging
from pathlib import Path

from modules import SetupError

log = logging.getLogger(__name__)


def pick_variant(requested: str, gpu: bool) -> str:
    if requested == "auto":
        return "separable_half" if gpu else "separable_float"
    return requested


def build_engine(config):
    """Poser + engine from the command-line config; every failure is a one-line SetupError."""
    import torch

    from talkinghead import weights
    from talkinghead.engine import TalkingHead
    from talkinghead.image import load_character
    from talkinghead.tha3.poser import Poser

    if config.talkinghead_gpu and not torch.cuda.is_available():
        raise SetupError("--talkinghead-gpu was given but PyTorch sees no CUDA device "
                         f"(torch {torch.__version__}); drop the flag to run on the CPU")
    device = "cuda" if config.talkinghead_gpu else "cpu"
    variant = pick_variant(config.talkinghead_model, config.talkinghead_gpu)
    models_dir = Path(config.talkinghead_models) if config.talkinghead_models else weights.MODELS_DIR
    try:
        poser = Poser.load(models_dir, variant, device)
    except weights.WeightsError as e:
        raise SetupError(str(e)) from None
    if not weights.DEFAULT_CHARACTER.is_file():
        raise SetupError(f"default character {weights.DEFAULT_CHARACTER} is missing: "
                         "run `python -m talkinghead.weights` to fetch it")
    first_character = load_character(weights.DEFAULT_CHARACTER.read_bytes())
    backend = _apply_backend(poser, config.talkinghead_backend, first_character)
    # On a CPU exact frames take ~0.3 s or more: stream frames blended from exact keyframes, kept by pose.
    smooth = device == "cpu"
    keyframes = getattr(config, "talkinghead_keyframes", None)
    disk = None
    if smooth and keyframes:
        from talkinghead.smooth.disk import KeyframeDisk
        disk = KeyframeDisk(keyframes, model=f"{variant}/{backend}")
    engine = TalkingHead(poser, smooth=smooth, idle_after=config.talkinghead_idle_seconds or None,
                         keyframe_disk=disk,
                         description={"backend": backend, "device": device, "model": variant,
                                      "models_dir": str(models_dir)})
    engine.start(first_character)
    log.info("talkinghead ready: %s on %s (%s backend), default character %s",
             variant, device, backend, weights.DEFAULT_CHARACTER.name)
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
        raise SetupError(str(e)) from None
    return backends.active_backend(poser)


def setup(app, config) -> None:
    from modules.talkinghead.routes import VIEWER_CAP, blueprint
    from modules.viewers import DEFAULT_MAX_VIEWERS, ViewerCap

    if "talkinghead" not in app.extensions:  # tests may hand in an engine they share across apps
        engine = build_engine(config)
        app.extensions["talkinghead"] = engine
        atexit.register(engine.close)
    app.extensions[VIEWER_CAP] = ViewerCap(getattr(config, "talkinghead_max_viewers", DEFAULT_MAX_VIEWERS))
    app.register_blueprint(blueprint)
    from modules.talkinghead import manual_poser_routes  # the manual poser page and its API
    manual_poser_routes.setup(app, config)
    from modules.talkinghead import mocap_routes  # the puppeteer: face capture drives the pose
    mocap_routes.setup(app, config)
