"""Where the smooth stream puts its exact keyframes, and how a frame between two of them blends them.

A frame between two keyframes blends their editor outputs by one weight, so it can only follow the straight
line between the two keyframes' rotations. Keyframes are therefore planned where the motion bends or covers
much ground: one per `interval` while the head rests, halved where needed (plan_interval). Pure functions
of the animator's pose: the animation is known ahead of the clock.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from talkinghead import pose as P

# Interpolating between two keyframes this far apart in one rotation value alone leaves the face ~40 dB from
# exact halfway between them (measured on lambda_00; the editor's warp is curved in the neck and body tilts,
# nearly straight in the others). An interval is halved until its keyframes are within this gap (weighted
# sum over the six values) and the motion between them is nearly straight, at most SPLITS times. Breathing
# interpolates almost perfectly (a full breath between two keyframes stays above 55 dB).
GAP = np.array([0.3, 0.4, 0.2, 0.6, 0.2, 3.0])  # head_x, head_y, neck_z, body_y, body_z, breathing
BEND = 0.2  # how far (in gaps) the pose between two keyframes may stray from the line between them
SPLITS = 4  # so keyframes are at least interval / 16 apart
PROBES = 2 ** (SPLITS + 1)  # poses looked at per interval: twice per finest split


def gap(r0: np.ndarray, r1: np.ndarray) -> float:
    """How far apart two rotations are, in GAPs summed over the six values."""
    return float(np.abs((np.asarray(r1) - np.asarray(r0)) / GAP).sum())


def blend_weight(r: np.ndarray, r0: np.ndarray, r1: np.ndarray, time_weight: float) -> float:
    """How far rotation r is from keyframe rotation r0 toward r1 (0..1): its projection on the line between
    them, each value scaled by how much it shows. Sway eases in and out, so time alone would run ahead or
    lag; time_weight is used only when the keyframes hardly differ."""
    a, b, x = (np.asarray(v) / GAP for v in (r0, r1, r))
    span = b - a
    denominator = float(np.dot(span, span))
    if denominator < 1e-8:
        return float(np.clip(time_weight, 0.0, 1.0))
    return float(np.clip(np.dot(x - a, span) / denominator, 0.0, 1.0))


def bend(r0: np.ndarray, r: np.ndarray, r1: np.ndarray) -> float:
    """How far (in GAPs, summed over the values) rotation r strays from the straight line between keyframe
    rotations r0 and r1. Only leaving the line matters: the blend weight follows the pose along it, however
    unevenly it moves."""
    a, m, b = (np.asarray(v) / GAP for v in (r0, r, r1))
    span = b - a
    length = float(np.dot(span, span))
    along = float(np.dot(m - a, span)) / length if length > 1e-12 else 0.0
    return float(np.abs(m - a - np.clip(along, 0.0, 1.0) * span).sum())


def plan_interval(pose_at: Callable[[float], np.ndarray], start: float,
                  interval: float) -> list[tuple[float, int]]:
    """Keyframes in [start, start + interval) as (time, depth): the start (depth 0), and the midpoint (depth
    k for the k-th halving) of each half whose keyframes are more than a GAP apart or between which the
    motion, probed PROBES times per interval, leaves their line by more than BEND (a head at rest while the
    chest breathes is off it)."""
    rotations = [pose_at(start + interval * k / PROBES)[P.ROTATION] for k in range(PROBES + 1)]
    times = [(start, 0)]

    def split(k0: int, k1: int, depth: int) -> None:
        r0, r1 = rotations[k0], rotations[k1]
        if depth < SPLITS and (gap(r0, r1) > 1.0
                               or max(bend(r0, rotations[k], r1) for k in range(k0 + 1, k1)) > BEND):
            km = (k0 + k1) // 2
            split(k0, km, depth + 1)
            times.append((start + interval * km / PROBES, depth + 1))
            split(km, k1, depth + 1)

    split(0, PROBES, 0)
    return times


def within_budget(planned: list[tuple[float, int]], budget: float) -> list[float]:
    """The times of the planned keyframes (time, depth) down to the finest depth at which there are at most
    `budget` of them; interval starts (depth 0) always."""
    depth = SPLITS
    while depth > 0 and sum(d <= depth for _, d in planned) > budget:
        depth -= 1
    return [t for t, d in planned if d <= depth]
