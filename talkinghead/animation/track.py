"""Lip-sync playback: the vowel morphs follow an analysed audio track (talkinghead.lipsync.Track) on the
wall clock, at the audio's playback rate; the analyser's soft vowel weights are sharpened so the mouth takes
one or two clear shapes.

Threads: a TrackSpeech never changes after it is made; the track it plays must not change either (a
lipsync.Track is frozen). The Animator holds it under its RLock.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from talkinghead.animation.speech import VOWEL_GAIN


class MouthTrack(Protocol):
    """What lip-sync plays (talkinghead.lipsync.Track): mouth openness and vowel weights over time."""
    duration_s: float

    def at(self, t: float) -> tuple[float, np.ndarray]:
        """(openness 0..1, weights of aaa/iii/uuu/eee/ooo) t s into the track."""


# A lip-sync vowel weight below this share (after sharpening) is left out: the mouth takes one or two clear
# shapes rather than a blur of five (and the smooth stream has fewer distinct faces to make ahead).
_TRACK_MIN_WEIGHT = 0.4
_TRACK_SHARPNESS = 4.0  # weights^4, renormalised: the analyser's soft 0.6/0.3 becomes 0.94/0.06


class TrackSpeech:
    """The vowel morphs of a lip-sync track playing from `start` at `rate` (track seconds per wall-clock
    second): openness times the sharpened vowel weights, at the gains random speech uses."""

    def __init__(self, track: MouthTrack, start: float, rate: float = 1.0):
        self.track, self.start, self.rate = track, start, rate
        self.end = start + track.duration_s / rate

    def vowels(self, t: float) -> np.ndarray:
        openness, weights = self.track.at(min((min(t, self.end) - self.start) * self.rate, self.track.duration_s))
        return openness * _sharpened(np.asarray(weights, np.float64)) * VOWEL_GAIN


def _sharpened(weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    if total <= 0.0:
        return np.zeros(len(weights))
    sharp = (weights / total) ** _TRACK_SHARPNESS
    sharp /= sharp.sum()
    sharp[(sharp < _TRACK_MIN_WEIGHT) & (sharp < sharp.max())] = 0.0  # the strongest stays, whatever its share
    return sharp / sharp.sum()
