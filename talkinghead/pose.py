"""The one place that knows the 45 THA3 pose parameters: their names, order, ranges and groups.

Order and ranges follow the original THA3 `pose_parameters.py` (and ../shared/docs/api.md). Pairs are
expanded as `<name>_left_index`, `<name>_right_index`; single parameters are `<name>_index`, except
`mouth_delta` and `mouth_smirk` which keep their bare name (as the SillyTavern-Extras templates spell them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class ParamGroup:
    name: str
    arity: int  # 1 or 2 (left/right)
    low: float = 0.0
    high: float = 1.0


_GROUPS = (
    # 12 eyebrow parameters -> eyebrow morphing combiner
    ParamGroup("eyebrow_troubled", 2), ParamGroup("eyebrow_angry", 2), ParamGroup("eyebrow_lowered", 2),
    ParamGroup("eyebrow_raised", 2), ParamGroup("eyebrow_happy", 2), ParamGroup("eyebrow_serious", 2),
    # 27 face parameters -> face morpher
    ParamGroup("eye_wink", 2), ParamGroup("eye_happy_wink", 2), ParamGroup("eye_surprised", 2),
    ParamGroup("eye_relaxed", 2), ParamGroup("eye_unimpressed", 2), ParamGroup("eye_raised_lower_eyelid", 2),
    ParamGroup("iris_small", 2),
    ParamGroup("mouth_aaa", 1), ParamGroup("mouth_iii", 1), ParamGroup("mouth_uuu", 1),
    ParamGroup("mouth_eee", 1), ParamGroup("mouth_ooo", 1), ParamGroup("mouth_delta", 1),
    ParamGroup("mouth_lowered_corner", 2), ParamGroup("mouth_raised_corner", 2), ParamGroup("mouth_smirk", 1),
    ParamGroup("iris_rotation_x", 1, -1.0, 1.0), ParamGroup("iris_rotation_y", 1, -1.0, 1.0),
    # 6 rotation parameters -> body rotator and editor
    ParamGroup("head_x", 1, -1.0, 1.0), ParamGroup("head_y", 1, -1.0, 1.0), ParamGroup("neck_z", 1, -1.0, 1.0),
    ParamGroup("body_y", 1, -1.0, 1.0), ParamGroup("body_z", 1, -1.0, 1.0),
    ParamGroup("breathing", 1, 0.0, 1.0),
)

_BARE = {"mouth_delta", "mouth_smirk"}


def _expand(group: ParamGroup) -> list[str]:
    if group.arity == 2:
        return [f"{group.name}_left_index", f"{group.name}_right_index"]
    return [group.name if group.name in _BARE else f"{group.name}_index"]


NAMES: tuple[str, ...] = tuple(n for g in _GROUPS for n in _expand(g))
INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
LOW = np.array([g.low for g in _GROUPS for _ in range(g.arity)], dtype=np.float32)
HIGH = np.array([g.high for g in _GROUPS for _ in range(g.arity)], dtype=np.float32)
NUM_PARAMS = len(NAMES)
NUM_EYEBROW, NUM_FACE, NUM_ROTATION = 12, 27, 6
EYEBROW = slice(0, NUM_EYEBROW)
FACE = slice(NUM_EYEBROW, NUM_EYEBROW + NUM_FACE)
ROTATION = slice(NUM_EYEBROW + NUM_FACE, NUM_PARAMS)
assert NUM_PARAMS == 45 and NUM_EYEBROW + NUM_FACE + NUM_ROTATION == 45


class PoseError(ValueError):
    """A pose given by name has an unknown name or an out-of-range value."""


def zeros() -> np.ndarray:
    return np.zeros(NUM_PARAMS, dtype=np.float32)


def from_dict(values: Mapping[str, float], *, strict: bool = True) -> np.ndarray:
    """Build a 45-vector from {name: value}; names left out are 0.

    strict: unknown names and out-of-range values raise PoseError (for user input); otherwise they are
    dropped / clipped (for templates made by other tools).
    """
    pose = zeros()
    for name, value in values.items():
        if name not in INDEX:
            if strict:
                raise PoseError(f"unknown pose parameter {name!r}; known: {', '.join(NAMES)}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise PoseError(f"pose parameter {name!r} must be a number, got {_short(value)}")
        i = INDEX[name]
        value = float(value)  # compared in float64: a value beyond float32 is out of range, not infinite
        if strict and not (float(LOW[i]) <= value <= float(HIGH[i])):
            raise PoseError(f"pose parameter {name!r} = {value} is out of range [{LOW[i]:g}, {HIGH[i]:g}]")
        pose[i] = min(max(value, float(LOW[i])), float(HIGH[i]))
    return pose


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range (JSON allows any number of digits)
        return False


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_dict(pose: np.ndarray, *, skip_zeros: bool = False) -> dict[str, float]:
    return {n: float(v) for n, v in zip(NAMES, pose) if not (skip_zeros and v == 0.0)}
