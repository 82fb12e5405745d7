"""Easing curves shared by the motions (animator) and the puppeteer (mocap)."""
from __future__ import annotations


def smoothstep(x: float) -> float:
    """0 at x <= 0, 1 at x >= 1, and the cubic 3x² - 2x³ between: flat at both ends."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)
