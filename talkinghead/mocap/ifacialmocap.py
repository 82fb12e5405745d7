"""iFacialMocap: the phone streams UDP text packets to our port 49983 once we send it the handshake.

    v1: mouthSmile_R-0|eyeBlink_L-100|…|=head#rx,ry,rz,tx,ty,tz|rightEye#x,y,z|leftEye#x,y,z|
    v2: mouthSmileRight&0|eyeBlinkLeft&100|…|head#rx,ry,rz,tx,ty,tz|rightEye#…|leftEye#…|

Blendshape values are 0..100, angles degrees. `parse` turns one packet into a Capture or raises
MalformedPacket: anything that is not such text (not UTF-8, no known field, a bad number) is refused whole.
"""
from __future__ import annotations

import math

from talkinghead.mocap.mapping import Capture, canonical

PORT = 49983
HANDSHAKE = "iFacialMocap_sahuasouryya9218sauhuiayeta91555dy3719"
HANDSHAKE_V2 = HANDSHAKE + "|sendDataVersion=v2"
MAX_FIELDS = 128  # 52 blendshapes, the head, two eyes and a few extras
MAX_NAME = 40

# ARKit's 52 blendshapes, canonical (talkinghead.mocap.mapping.canonical): names outside them are ignored.
ARKIT = frozenset(n.lower() for n in (
    "browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft "
    "cheekSquintRight eyeBlinkLeft eyeBlinkRight eyeLookDownLeft eyeLookDownRight eyeLookInLeft eyeLookInRight "
    "eyeLookOutLeft eyeLookOutRight eyeLookUpLeft eyeLookUpRight eyeSquintLeft eyeSquintRight eyeWideLeft "
    "eyeWideRight jawForward jawLeft jawOpen jawRight mouthClose mouthDimpleLeft mouthDimpleRight mouthFrownLeft "
    "mouthFrownRight mouthFunnel mouthLeft mouthLowerDownLeft mouthLowerDownRight mouthPressLeft mouthPressRight "
    "mouthPucker mouthRight mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper mouthSmileLeft "
    "mouthSmileRight mouthStretchLeft mouthStretchRight mouthUpperUpLeft mouthUpperUpRight noseSneerLeft "
    "noseSneerRight tongueOut").split())
assert len(ARKIT) == 52


class MalformedPacket(ValueError):
    pass


def parse(data: bytes) -> Capture:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("not UTF-8") from None
    fields = [f for f in text.strip().split("|") if f]
    if len(fields) > MAX_FIELDS:
        raise MalformedPacket(f"{len(fields)} fields")
    capture = Capture()
    known = 0
    for f in fields:
        if "#" in f:  # a bone: =head#…, rightEye#…, leftEye#…
            name, _, numbers = f.lstrip("=").partition("#")
            if name == "head":
                values = _numbers(numbers)
                if len(values) < 3:
                    raise MalformedPacket("head needs 3 angles")
                capture.head = (values[0], values[1], values[2])
                known += 1
            continue
        sep = "&" if "&" in f else "-"
        name, found, value = f.partition(sep)
        if not found or len(name) > MAX_NAME:
            continue  # other keys (v2 sends a few); unknown text is counted below
        key = canonical(name)
        if key not in ARKIT:
            continue
        number = _number(value)
        capture.shapes[key] = min(max(number / 100.0, 0.0), 1.0)
        known += 1
    if not known:
        raise MalformedPacket("no blendshape or head field")
    return capture


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MalformedPacket(f"not a number: {text[:20]!r}") from None
    if not math.isfinite(value) or abs(value) > 1e6:
        raise MalformedPacket("number out of range")
    return value


def _numbers(text: str) -> list[float]:
    parts = text.split(",")
    if len(parts) > 8:
        raise MalformedPacket("too many numbers")
    return [_number(p) for p in parts]


def format_packet(shapes: dict[str, float], head: tuple[float, ...] = (0, 0, 0, 0, 0, 0), *,
                  version: int = 1) -> bytes:
    """A packet as the phone sends it (for tests and the benchmark). shapes: ARKit names → 0..1."""
    fields = []
    for name, value in shapes.items():
        if version == 1:
            name = name.replace("Left", "_L").replace("Right", "_R") if name.endswith(("Left", "Right")) else name
            fields.append(f"{name}-{round(100 * value)}")
        else:
            fields.append(f"{name}&{round(100 * value)}")
    numbers = ",".join(f"{v:.4f}" for v in head)
    fields.append(("=head#" if version == 1 else "head#") + numbers)
    fields += ["rightEye#0.0,0.0,0.0", "leftEye#0.0,0.0,0.0"]
    return ("|".join(fields) + "|").encode("utf-8")
