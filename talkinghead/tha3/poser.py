"""The THA3 poser: runs the five networks in order to pose a 512x512 character image.

    image --crop 128--> eyebrow_decomposer (once per image) --> eyebrow_morphing_combiner (12 eyebrow params)
          --paste into 192 face crop--> face_morpher (27 face params) --paste into 512 image-->
          --down to 256--> two_algo_face_body_rotator (6 rotation params) --up to 512--> editor --> output

Each stage is a method so that callers can cache per-stage outputs. Images are (1, 4, H, W) tensors in
linear RGB + alpha scaled to -1..1, like the original `tha3.util.extract_pytorch_image_from_PIL_image`.

Half variants: float16 on CUDA; on CPU they run in float32 (float16 convolutions on CPU are ~30x slower).

Stage caching (`pose()` / `render()`): each stage's output is a function of a part of the pose only (eyebrow
combiner: the 12 eyebrow values; face morpher: those + the 27 face values; rotator and editor: all 45), so
the poser keeps recent outputs keyed by the exact bytes of that part and skips a stage whose inputs did not
change. An animated character mostly sways and breathes (rotation only): then only the rotator and the
editor run. A cached output is the very tensor computed before, so frames stay bit-identical; the cache is
dropped when the image or the networks change. `cache_stages = False` turns it off.
"""
from __future__ import annotations

import copy
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import pose as P
from .. import weights
from ..weights import WeightsError
from . import build_networks
from .editor import Editor, EditorChanges, apply_changes

log = logging.getLogger(__name__)

IMAGE_SIZE = 512
EYEBROW_BOX = (slice(64, 192), slice(192, 320))  # 128x128 eyebrow crop in the 512 image
FACE_BOX = (slice(32, 224), slice(160, 352))  # 192x192 face crop in the 512 image
EYEBROW_IN_FACE = (slice(32, 160), slice(32, 160))  # the eyebrow crop inside the face crop


# ---- image conversion -------------------------------------------------------------------------------

def _srgb_lut() -> tuple[np.ndarray, np.ndarray]:
    # Same float64 formulas as tha3.util (x/255, sRGB->linear, *2-1), evaluated once per byte value.
    x = np.arange(256, dtype=np.float64) / 255.0
    rgb = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return (rgb * 2.0 - 1.0).astype(np.float32), (x * 2.0 - 1.0).astype(np.float32)


_RGB_LUT, _ALPHA_LUT = _srgb_lut()


def image_to_tensor(rgba: np.ndarray) -> Tensor:
    """uint8 (H, W, 4) sRGB straight alpha -> float32 (4, H, W) linear RGB + alpha in -1..1.
    Fully transparent pixels become transparent black, so hidden colours cannot leak into the output."""
    if not isinstance(rgba, np.ndarray) or rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected a uint8 HxWx4 RGBA array, got "
                         f"{getattr(rgba, 'dtype', type(rgba).__name__)} {getattr(rgba, 'shape', '')}")
    rgb = _RGB_LUT[rgba[:, :, :3]]
    rgb[rgba[:, :, 3] == 0] = _RGB_LUT[0]
    hwc = np.concatenate([rgb, _ALPHA_LUT[rgba[:, :, 3:]]], axis=2)
    # A (4, H, W) view of HWC memory (channels-last strides), the layout tha3.util produces: the kernels
    # downstream then round exactly like the original's.
    return torch.from_numpy(hwc).permute(2, 0, 1)


def tensor_to_rgba_uint8_tensor(image: Tensor) -> Tensor:
    """(4, H, W) or (1, 4, H, W) in -1..1, any device/dtype -> uint8 (H, W, 4) sRGB tensor on the same device.
    Same float32 math as tha3.util.convert_output_image_from_torch_to_numpy followed by rint(x * 255)."""
    x = (image.detach().reshape(-1, *image.shape[-3:])[0].float() + 1.0) / 2.0
    rgb = x[:3].clamp(0.0, 1.0)
    rgb = torch.where(rgb <= 0.003130804953560372, rgb * 12.92, 1.055 * rgb ** (1.0 / 2.4) - 0.055)
    rgba = torch.cat([rgb, x[3:4].clamp(0.0, 1.0)], dim=0)
    return torch.round(rgba * 255.0).to(torch.uint8).permute(1, 2, 0).contiguous()


def tensor_to_rgba_uint8(image: Tensor) -> np.ndarray:
    """(4, H, W) or (1, 4, H, W) in -1..1 -> uint8 (H, W, 4) sRGB straight-alpha numpy array."""
    return tensor_to_rgba_uint8_tensor(image).cpu().numpy()


# ---- weights ----------------------------------------------------------------------------------------

def read_state_dict(path: Path) -> dict[str, Tensor]:
    """torch.load a weight file safely; any failure is a WeightsError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot read THA3 weight file {path}: {reason[:300]}") from e
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"THA3 weight file {path} does not hold a state dict of tensors")
    return dict(state)


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a weight file into net strictly; a mismatch is a WeightsError naming the file and keys."""
    state = read_state_dict(path)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{what}: {', '.join(keys[:3])}" + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("wrong shapes", wrong)) if keys]
    if problems:
        raise WeightsError(f"THA3 weight file {path} does not fit {type(net).__name__}: "
                           + "; ".join(problems))
    net.load_state_dict(state, strict=True)


# ---- poser ------------------------------------------------------------------------------------------

STAGES = ("eyebrow_combiner", "face_morpher", "rotator", "editor")
# Outputs kept per stage (least recently used goes first). Face shapes recur while talking: the engine snaps
# face values to a lattice (talkinghead.smooth.quantize_face). Over 60 s of the animator at 25 FPS, 32
# morphed face crops (590 KB each, ~19 MB) serve ~92 % of talking frames (16: 85 %, 1: 47 %) and ~99 % of
# idle ones, which change only the rotation. The rotator's and the editor's outputs depend on the whole pose,
# whose rotation changes every animated frame: one frame is kept (the same pose again), standing for both.
STAGE_CACHE_SIZES = {"eyebrow_combiner": 4, "face_morpher": 32, "editor": 1}


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict[bytes, object] = OrderedDict()

    def get(self, key: bytes):
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: bytes, value) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class Poser:
    def __init__(self, networks: dict[str, nn.Module], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, variant: str | None = None):
        self.device = torch.device(device)
        self.dtype = dtype
        self.variant = variant
        self.networks = {name: net.to(self.device, dtype).eval().requires_grad_(False)
                         for name, net in networks.items()}
        if isinstance(self.networks.get("editor"), Editor):
            # Only the editor's network part is a "network" here (a backend may run it); its warp and blend
            # stay in torch, where the smooth stream applies blended changes to new faces the same way.
            self.networks["editor"] = EditorChanges(self.networks["editor"])
        self.cache_stages = True  # stage caching in _run (pose/render); see the module docstring
        self._own_image()

    def _own_image(self) -> None:
        """The character's part of the poser (what with_own_image does not share): the image, what was computed
        from it, the stage caches and their statistics."""
        self.last_timings: dict[str, float] = {}
        self._pending_timings: dict[str, float] = {}
        self._rgba: np.ndarray | None = None
        self._image: Tensor | None = None  # (1, 4, 512, 512) on device
        self._eyebrow_layers: tuple[Tensor, Tensor] | None = None  # (eyebrow, background), cached per image
        self.stage_runs: Counter[str] = Counter()  # stage -> times it was computed (not served from the cache)
        self.last_cached: tuple[str, ...] = ()  # the stages the last frame took from the cache
        self._stage_cache = {stage: _LRU(size) for stage, size in STAGE_CACHE_SIZES.items()}
        self._cache_networks: tuple[int, ...] = ()  # identity of the networks the cached outputs came from
        self._last_face: tuple[bytes, Tensor] | None = None  # the last face key and its full image

    def with_own_image(self) -> "Poser":
        """A poser for another character on the same networks: the very modules, in the same `networks` dict
        (a backend swapped in later serves both; no copy of the weights), with its own image and caches. The
        networks are run by one caller at a time (talkinghead.turns)."""
        twin = copy.copy(self)
        twin._own_image()
        return twin

    @classmethod
    def load(cls, models_dir: Path | str = weights.MODELS_DIR, variant: str = "separable_float",
             device: torch.device | str = "cpu") -> "Poser":
        """Build the networks of a variant and load their weights (WeightsError if missing or corrupt).
        `*_half` variants run in float16 on CUDA and in float32 on CPU (CPU float16 is far slower)."""
        device = torch.device(device)
        files = weights.model_files(Path(models_dir), variant)
        dtype = torch.float16 if variant.endswith("_half") and device.type == "cuda" else torch.float32
        networks = build_networks(variant)
        for name, net in networks.items():
            load_weights(net, files[name])
        if weights.needs_cast(Path(models_dir), variant):
            log.info("separable_half: no files of its own, casting separable_float to %s", dtype)
        return cls(networks, device, dtype, variant)

    # -- timing helper: per-stage wall time; CUDA work is asynchronous, so synchronise around stages
    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @torch.inference_mode()
    def set_image(self, rgba: np.ndarray) -> None:
        """Set the character (uint8 512x512x4 sRGB RGBA) and run the eyebrow decomposer on it once."""
        shape = (IMAGE_SIZE, IMAGE_SIZE, 4)
        if not isinstance(rgba, np.ndarray) or rgba.shape != shape or rgba.dtype != np.uint8:
            raise ValueError(f"expected a uint8 {IMAGE_SIZE}x{IMAGE_SIZE}x4 RGBA array, got "
                             f"{getattr(rgba, 'dtype', type(rgba).__name__)} {getattr(rgba, 'shape', '')}")
        if self._rgba is not None and np.array_equal(rgba, self._rgba):
            return
        image = image_to_tensor(rgba)[None].to(self.device, self.dtype)
        t0 = self._now()
        layers = self.networks["eyebrow_decomposer"](image[(..., *EYEBROW_BOX)])
        self._pending_timings["decomposer"] = (self._now() - t0) * 1000
        self._rgba, self._image, self._eyebrow_layers = rgba.copy(), image, layers
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cached stage outputs (done on a new image and when the networks change)."""
        for cache in self._stage_cache.values():
            cache.entries.clear()
        self._last_face = None

    @property
    def rgba(self) -> np.ndarray | None:
        """The character as set (uint8 512x512x4 sRGB RGBA), None before set_image()."""
        return self._rgba

    @property
    def image(self) -> Tensor:
        if self._image is None:
            raise RuntimeError("no character image: call set_image() first")
        return self._image

    # -- stages: inputs and outputs are (1, C, H, W) tensors on self.device in self.dtype

    @torch.inference_mode()
    def morph_eyebrows(self, eyebrow_pose: Tensor) -> Tensor:
        """(1, 12) -> eyebrow crop (1, 4, 128, 128)."""
        if self._eyebrow_layers is None:
            raise RuntimeError("no character image: call set_image() first")
        eyebrow, background = self._eyebrow_layers
        return self.networks["eyebrow_morphing_combiner"](background, eyebrow, eyebrow_pose)

    @torch.inference_mode()
    def face_morph(self, face_pose: Tensor, eyebrow_image: Tensor) -> Tensor:
        """(1, 27), eyebrow crop -> full image (1, 4, 512, 512) with the morphed face pasted in."""
        face = self.image[(..., *FACE_BOX)].clone()
        face[(..., *EYEBROW_IN_FACE)] = eyebrow_image
        full = self.image.clone()
        full[(..., *FACE_BOX)] = self.networks["face_morpher"](face, face_pose)
        return full

    @torch.inference_mode()
    def rotate(self, face_morphed: Tensor, rotation_pose: Tensor) -> tuple[Tensor, Tensor]:
        """Full image, (1, 6) -> (warped image (1, 4, 512, 512), grid change (1, 2, 512, 512)),
        computed at 256x256 and upsampled."""
        half = F.interpolate(face_morphed, size=(256, 256), mode="bilinear", align_corners=False)
        warped, grid_change = self.networks["two_algo_face_body_rotator"](half, rotation_pose)
        up = dict(size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        return F.interpolate(warped, **up), F.interpolate(grid_change, **up)

    @torch.inference_mode()
    def edit_changes(self, face_morphed: Tensor, warped: Tensor, grid_change: Tensor,
                     rotation_pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> the editor's (grid change, colour change, alpha), before they are applied."""
        grid, color, alpha = self.networks["editor"](face_morphed, warped, grid_change, rotation_pose)
        return grid, color, alpha

    @torch.inference_mode()
    def edit(self, face_morphed: Tensor, warped: Tensor, grid_change: Tensor,
             rotation_pose: Tensor) -> Tensor:
        """-> posed image (1, 4, 512, 512)."""
        return apply_changes(face_morphed, *self.edit_changes(face_morphed, warped, grid_change, rotation_pose))

    def _pose_tensor(self, pose: np.ndarray | Tensor) -> Tensor:
        p = torch.as_tensor(pose).detach().reshape(-1)
        if p.numel() != P.NUM_PARAMS:
            raise ValueError(f"expected {P.NUM_PARAMS} pose parameters, got {p.numel()}")
        return p.to(self.device, self.dtype)[None]

    @torch.inference_mode()
    def _run(self, pose: np.ndarray | Tensor) -> Tensor:
        p = self._pose_tensor(pose)
        rotation = p[:, P.ROTATION]
        timings = self._pending_timings
        self._pending_timings = {}
        keys = self._stage_keys(p)
        cached = []

        def lookup(stage: str):
            hit = self._stage_cache[stage].get(keys[stage]) if keys else None
            if hit is not None:
                cached.append(stage)
                timings[stage] = 0.0
            return hit

        def computed(stage: str, t0: float) -> None:
            self.stage_runs[stage] += 1
            timings[stage] = (self._now() - t0) * 1000

        out = lookup("editor")  # the same pose as a recent frame: the frame itself
        if out is not None:
            cached[:0] = STAGES[:-1]
            timings.update(dict.fromkeys(STAGES, 0.0))
        else:
            face_morphed = self._cached_face_image(keys)
            if face_morphed is not None:
                cached[:0] = ["eyebrow_combiner", "face_morpher"]
                timings.update(eyebrow_combiner=0.0, face_morpher=0.0)
            else:
                t0 = self._now()
                eyebrow = lookup("eyebrow_combiner")
                if eyebrow is None:
                    eyebrow = self.morph_eyebrows(p[:, P.EYEBROW])
                    computed("eyebrow_combiner", t0)
                    self._store("eyebrow_combiner", keys, eyebrow)
                t1 = self._now()
                face_morphed = self.face_morph(p[:, P.FACE], eyebrow)
                computed("face_morpher", t1)
                if keys:  # the crop only (the full image is rebuilt from it); a copy, not a view of the image
                    self._store("face_morpher", keys, face_morphed[(..., *FACE_BOX)].clone())
                    self._last_face = (keys["face_morpher"], face_morphed)
            t2 = self._now()
            warped, grid_change = self.rotate(face_morphed, rotation)
            computed("rotator", t2)
            t3 = self._now()
            out = self.edit(face_morphed, warped, grid_change, rotation)
            computed("editor", t3)
            self._store("editor", keys, out)
        self.last_timings = timings
        self.last_cached = tuple(cached)
        return out[0]

    def _stage_keys(self, p: Tensor) -> dict[str, bytes] | None:
        """Cache keys per stage: the exact bytes (in self.dtype, as the networks get them) of the pose values
        the stage depends on; the rotator and the editor depend on all of them, so the editor's cached frame
        stands for both. None: caching is off."""
        if not self.cache_stages:
            return None
        networks = tuple(id(net) for net in self.networks.values())
        if networks != self._cache_networks:  # apply_backend swapped them: outputs may differ slightly
            self.clear_cache()
            self._cache_networks = networks
        values = p.detach().reshape(-1).to("cpu").view(torch.uint8).numpy().tobytes()
        step = p.element_size()
        return {"eyebrow_combiner": values[:P.EYEBROW.stop * step], "face_morpher": values[:P.FACE.stop * step],
                "editor": values}

    def _store(self, stage: str, keys: dict[str, bytes] | None, value: Tensor) -> None:
        if keys:
            self._stage_cache[stage].put(keys[stage], value)

    def _cached_face_image(self, keys: dict[str, bytes] | None) -> Tensor | None:
        """face_morph()'s output for the cached face crop of these keys, or None."""
        if not keys:
            return None
        key = keys["face_morpher"]
        face = self._stage_cache["face_morpher"].get(key)
        if face is None:
            return None
        if self._last_face is None or self._last_face[0] != key:
            full = self.image.clone()
            full[(..., *FACE_BOX)] = face
            self._last_face = (key, full)
        return self._last_face[1]

    def pose(self, pose: np.ndarray | Tensor) -> Tensor:
        """45 pose parameters (order of talkinghead.pose.NAMES) -> (4, 512, 512) float32 CPU tensor, -1..1."""
        out = self._run(pose).to("cpu", torch.float32)
        return out.clone() if out.is_inference() else out  # a normal tensor: callers may edit it in place

    def render(self, pose: np.ndarray | Tensor) -> np.ndarray:
        """45 pose parameters -> uint8 (512, 512, 4) sRGB straight-alpha frame."""
        with torch.inference_mode():
            return tensor_to_rgba_uint8_tensor(self._run(pose)).cpu().numpy()
