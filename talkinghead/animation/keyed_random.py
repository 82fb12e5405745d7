"""Keyed random numbers: every random choice of the animation (blink times, sway targets, jitter, syllables)
is a hash of (seed, stream, event count, slot), so asking about a future t early (render-ahead) and again
later gives the same answer, in any order of asking.

Threads: a KeyedRandom never changes after it is made; any thread may use it.
"""
from __future__ import annotations

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finaliser: a well-mixed 64-bit hash of x."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class Stream:
    """First part of every random key, so blinks, sway, jitter and speech never share numbers."""
    BLINK, SWAY, JITTER, SPEECH = 1, 2, 3, 4


class KeyedRandom:
    """Counter-based random numbers: the same key always gives the same number, whatever was asked before."""

    def __init__(self, seed: int):
        self._root = _mix64(seed & _MASK64)

    def uniform(self, *key: int) -> float:
        """A number in [0, 1) for this key of integers."""
        return (self._hash(key) >> 11) * 2.0 ** -53

    def uniforms(self, count: int, *key: int) -> list[float]:
        """`count` numbers in [0, 1): the same as uniform(*key, i) for i in range(count)."""
        prefix = self._hash(key)
        return [(_mix64(prefix ^ i) >> 11) * 2.0 ** -53 for i in range(count)]

    def _hash(self, key: tuple[int, ...]) -> int:
        h = self._root
        for part in key:
            h = _mix64(h ^ (part & _MASK64))
        return h
