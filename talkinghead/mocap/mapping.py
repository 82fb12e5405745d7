"""Face capture → the 45 THA3 pose values: the mapping table, calibration and per-parameter gain.

A capture (`Capture`) is what one packet says about the face: blendshape weights 0..1 under canonical
names (lower case: ARKit's `eyeBlinkLeft` is `eyeblinkleft`, iFacialMocap v1's `eyeBlink_L` too; VRM presets
are `a`, `blink_l`, `joy`, …), and the head's rotation in degrees (pitch, yaw, roll: iFacialMocap's `head#`
x, y, z; for VMC the Neck·Head bones as Unity Euler angles) and, from VMC, the body's (Spine·Chest·UpperChest).

Each THA3 value is a weighted sum of channels, then × its gain (default 1; a negative gain mirrors), clipped
to its range. The head angles' scale (±15° pitch and roll, ±10° yaw = the full THA3 range) and signs follow
THA3's own iFacialMocap converter; left/right blendshapes go to the same-named THA3 side, as there.

| THA3 parameter | ARKit blendshapes (iFacialMocap, VMC) | VRM presets (VMC; 0.x and 1.0 names) |
|---|---|---|
| eyebrow_troubled_{l,r} | browInnerUp | Sorrow, sad |
| eyebrow_angry_{l,r} | – | Angry |
| eyebrow_lowered_{l,r} | browDown{Left,Right} | – |
| eyebrow_raised_{l,r} | browOuterUp{Left,Right} | Surprised |
| eyebrow_happy_{l,r} | – | Joy, happy |
| eye_wink_{l,r} | eyeBlink{Left,Right} | Blink, Blink_{L,R}, blink{Left,Right} |
| eye_happy_wink_{l,r} | – | Joy, happy |
| eye_surprised_{l,r} | eyeWide{Left,Right} | Surprised |
| eye_relaxed_{l,r} | – | Fun, relaxed |
| eye_raised_lower_eyelid_{l,r} | eyeSquint{Left,Right} | – |
| mouth_aaa | jawOpen | A, aa |
| mouth_iii | ½ mouthStretchLeft + ½ mouthStretchRight | I, ih |
| mouth_uuu | mouthPucker | U, ou |
| mouth_eee | – | E, ee |
| mouth_ooo | mouthFunnel | O, oh |
| mouth_lowered_corner_{l,r} | mouthFrown{Left,Right} | Sorrow, sad, Angry |
| mouth_raised_corner_{l,r} | mouthSmile{Left,Right} | Joy, happy, Fun |
| iris_rotation_x | ½ (eyeLookUpLeft + eyeLookUpRight − eyeLookDownLeft − eyeLookDownRight) | LookUp − LookDown |
| iris_rotation_y | ½ (eyeLookInLeft − eyeLookOutLeft − eyeLookInRight + eyeLookOutRight) | LookLeft − LookRight |
| head_x | −pitch / 15° | (Neck·Head bones) |
| head_y | −yaw / 10° | (Neck·Head bones) |
| neck_z | roll / 15° | (Neck·Head bones) |
| body_y | −½ yaw / 10°, −body yaw / 10° | (Spine·Chest·UpperChest bones) |
| body_z | ½ roll / 15°, body roll / 15° | (Spine·Chest·UpperChest bones) |

Not driven (0 while capture drives): eyebrow_serious, eye_unimpressed, iris_small, mouth_delta, mouth_smirk.
Breathing always stays the animator's.

Calibration captures a resting face: afterwards a blendshape reads `(v − rest) / (1 − rest)` (so rest is 0
and full is still 1) and an angle `v − rest`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from talkinghead import pose as P

# Virtual channels for the rotations, in degrees.
PITCH, YAW, ROLL = "head.pitch", "head.yaw", "head.roll"
BODY_YAW, BODY_ROLL = "body.yaw", "body.roll"
ANGLES = (PITCH, YAW, ROLL, BODY_YAW, BODY_ROLL)


@dataclass
class Capture:
    """One packet's face: blendshapes (canonical names, 0..1) and rotations (degrees, see the module doc)."""
    shapes: dict[str, float] = field(default_factory=dict)
    head: tuple[float, float, float] | None = None  # pitch, yaw, roll
    body: tuple[float, float, float] | None = None  # pitch, yaw, roll (VMC's spine)

    def channels(self) -> dict[str, float]:
        out = dict(self.shapes)
        if self.head is not None:
            out[PITCH], out[YAW], out[ROLL] = self.head
        if self.body is not None:
            out[BODY_YAW], out[BODY_ROLL] = self.body[1], self.body[2]
        return out


def canonical(name: str) -> str:
    """iFacialMocap v1's `_L`/`_R` suffixes as ARKit's Left/Right; any capitalisation."""
    if name.endswith("_L") and not name.lower().startswith("blink"):
        name = name[:-2] + "Left"
    elif name.endswith("_R") and not name.lower().startswith("blink"):
        name = name[:-2] + "Right"
    return name.lower()


def _sides(target: str, left: dict[str, float], right: dict[str, float]) -> list[tuple[str, dict]]:
    return [(f"{target}_left_index", left), (f"{target}_right_index", right)]


def _both(target: str, sources: dict[str, float]) -> list[tuple[str, dict]]:
    return _sides(target, sources, sources)


# THA3 name -> {channel: weight}: the table in the module docstring, as data.
TABLE: dict[str, dict[str, float]] = dict([
    *_both("eyebrow_troubled", {"browinnerup": 1.0, "sorrow": 1.0, "sad": 1.0}),
    *_both("eyebrow_angry", {"angry": 1.0}),
    *_sides("eyebrow_lowered", {"browdownleft": 1.0}, {"browdownright": 1.0}),
    *_sides("eyebrow_raised", {"browouterupleft": 1.0, "surprised": 1.0},
            {"browouterupright": 1.0, "surprised": 1.0}),
    *_both("eyebrow_happy", {"joy": 1.0, "happy": 1.0}),
    *_sides("eye_wink", {"eyeblinkleft": 1.0, "blink": 1.0, "blink_l": 1.0, "blinkleft": 1.0},
            {"eyeblinkright": 1.0, "blink": 1.0, "blink_r": 1.0, "blinkright": 1.0}),
    *_both("eye_happy_wink", {"joy": 1.0, "happy": 1.0}),
    *_sides("eye_surprised", {"eyewideleft": 1.0, "surprised": 1.0}, {"eyewideright": 1.0, "surprised": 1.0}),
    *_both("eye_relaxed", {"fun": 1.0, "relaxed": 1.0}),
    *_sides("eye_raised_lower_eyelid", {"eyesquintleft": 1.0}, {"eyesquintright": 1.0}),
    ("mouth_aaa_index", {"jawopen": 1.0, "a": 1.0, "aa": 1.0}),
    ("mouth_iii_index", {"mouthstretchleft": 0.5, "mouthstretchright": 0.5, "i": 1.0, "ih": 1.0}),
    ("mouth_uuu_index", {"mouthpucker": 1.0, "u": 1.0, "ou": 1.0}),
    ("mouth_eee_index", {"e": 1.0, "ee": 1.0}),
    ("mouth_ooo_index", {"mouthfunnel": 1.0, "o": 1.0, "oh": 1.0}),
    *_sides("mouth_lowered_corner", {"mouthfrownleft": 1.0, "sorrow": 1.0, "sad": 1.0, "angry": 1.0},
            {"mouthfrownright": 1.0, "sorrow": 1.0, "sad": 1.0, "angry": 1.0}),
    *_sides("mouth_raised_corner", {"mouthsmileleft": 1.0, "joy": 1.0, "happy": 1.0, "fun": 1.0},
            {"mouthsmileright": 1.0, "joy": 1.0, "happy": 1.0, "fun": 1.0}),
    ("iris_rotation_x_index", {"eyelookupleft": 0.5, "eyelookupright": 0.5, "eyelookdownleft": -0.5,
                               "eyelookdownright": -0.5, "lookup": 1.0, "lookdown": -1.0}),
    ("iris_rotation_y_index", {"eyelookinleft": 0.5, "eyelookoutleft": -0.5, "eyelookinright": -0.5,
                               "eyelookoutright": 0.5, "lookleft": 1.0, "lookright": -1.0}),
    ("head_x_index", {PITCH: -1 / 15}),
    ("head_y_index", {YAW: -1 / 10}),
    ("neck_z_index", {ROLL: 1 / 15}),
    ("body_y_index", {YAW: -0.5 / 10, BODY_YAW: -1 / 10}),
    ("body_z_index", {ROLL: 0.5 / 15, BODY_ROLL: 1 / 15}),
])
assert all(name in P.INDEX for name in TABLE)
BREATHING = P.INDEX["breathing_index"]
# What capture drives: every value but breathing (the ones no channel feeds are held at 0: the face is the
# user's, an emotion's template would fight it).
DRIVEN = np.ones(P.NUM_PARAMS, dtype=bool)
DRIVEN[BREATHING] = False
_ROWS = [(P.INDEX[name], list(sources.items())) for name, sources in TABLE.items()]


class Mapper:
    """Capture → 45 values (breathing 0), with calibration and per-parameter gains. Not thread-safe: the
    receiver thread owns it (the Puppeteer guards calls from elsewhere)."""

    def __init__(self):
        self.gains = np.ones(P.NUM_PARAMS, dtype=np.float32)
        self.rest: dict[str, float] | None = None  # channel -> its resting value (calibration)

    def calibrate(self, capture: Capture | None) -> None:
        """This capture is the resting face (None: forget the calibration)."""
        self.rest = None if capture is None else capture.channels()

    def set_gain(self, name: str, gain: float) -> None:
        self.gains[P.INDEX[name]] = gain

    def convert(self, capture: Capture) -> np.ndarray:
        channels = capture.channels()
        if self.rest:
            for name, value in channels.items():
                rest = self.rest.get(name)
                if rest is None:
                    continue
                if name in ANGLES:
                    channels[name] = value - rest
                else:
                    channels[name] = max(0.0, value - rest) / max(1.0 - rest, 1e-3)
        out = np.zeros(P.NUM_PARAMS, dtype=np.float64)
        for index, sources in _ROWS:
            out[index] = sum(weight * channels.get(name, 0.0) for name, weight in sources)
        out *= self.gains
        out[~DRIVEN] = 0.0
        return np.clip(out, P.LOW, P.HIGH).astype(np.float32)


def euler_degrees(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    """A Unity quaternion as Unity's Euler angles (Z, then X, then Y), in degrees: (pitch, yaw, roll)."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or norm < 1e-6:
        raise ValueError("not a rotation quaternion")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * x - y * z))))
    yaw = math.atan2(2 * (w * y + x * z), 1 - 2 * (x * x + y * y))
    roll = math.atan2(2 * (w * z + x * y), 1 - 2 * (x * x + z * z))
    return math.degrees(pitch), math.degrees(yaw), math.degrees(roll)


def quaternion_product(a: tuple, b: tuple) -> tuple[float, float, float, float]:
    """a·b for (x, y, z, w) quaternions: b's rotation in a's frame (a parent bone, then its child)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz)
