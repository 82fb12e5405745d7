"""Random speech: a talking mouth without audio, syllable by syllable (words of 1-4 syllables, pauses, now
and then a breath), each syllable an open-close of the mouth with its own vowel shape.

Threads: not thread-safe on its own. It belongs to one Animator and is used only under that Animator's RLock
(talkinghead/animation/animator.py): it is drawn lazily and cached, so even reading it changes it.
"""
from __future__ import annotations

import numpy as np

from talkinghead.animation.keyed_random import KeyedRandom, Stream
from talkinghead.animation.timing import Timeline
from talkinghead.curves import smoothstep
from talkinghead.settings import VOWEL_MORPHS, AnimatorSettings


class _Syllable:
    """One open-close of the mouth (or a pause, with peak 0) from `start` to `end`."""
    __slots__ = ("start", "end", "open_from", "peak", "open_to", "weights")

    def __init__(self, start: float, end: float, open_from: float, peak: float, open_to: float,
                 weights: np.ndarray):
        self.start, self.end, self.open_from, self.peak, self.open_to = start, end, open_from, peak, open_to
        self.weights = weights


# How wide each vowel morph opens at full voice (ooo/uuu are already big shapes on THA3 models).
VOWEL_GAIN = np.array([1.0, 0.8, 0.7, 0.8, 0.8])
_SYLLABLE_PEAK_AT = 0.45  # fraction of a syllable at which the mouth is widest
_VOWEL_BLEND = 0.3  # fraction of a syllable over which its vowel shape blends in from the previous one


class Speech:
    """Speech-like mouth movement: words of 1-4 syllables, each an open-close cycle of 2-4 keyframes
    (1/talking_fps s each) with its own vowel (mostly one dominant, sometimes a second mixed in), short
    pauses between words and now and then a longer one (a breath). Generated lazily in order from keyed
    random numbers, so it is the same whenever asked."""

    def __init__(self, random: KeyedRandom, event: int, t0: float, settings: AnimatorSettings):
        self._random, self._event = random, event
        self._keyframe = 1.0 / settings.talking_fps
        favourite = VOWEL_MORPHS.index(settings.talking_morph)
        self._vowel_odds = np.where(np.arange(len(VOWEL_MORPHS)) == favourite, 0.4, 0.15)
        self._syllables_left_in_word = 0
        closed = np.zeros(len(VOWEL_MORPHS))
        closed[favourite] = 1.0
        # A short silent lead-in: the mouth opens on the first syllable, not already open.
        self._syllables = Timeline()
        self._syllables.append(t0, _Syllable(t0, t0 + self._keyframe, 0.0, 0.0, 0.0, closed))

    def vowels(self, t: float) -> np.ndarray:
        """The five vowel morph values at t."""
        while self._syllables.items[-1].end <= t:
            self._append_next()
        i = max(self._syllables.index_at(t), 0)
        syllable = self._syllables.items[i]
        u = min(max((t - syllable.start) / (syllable.end - syllable.start), 0.0), 1.0)
        previous = self._syllables.items[i - 1].weights if i > 0 else syllable.weights
        blend = smoothstep(u / _VOWEL_BLEND)
        weights = (1.0 - blend) * previous + blend * syllable.weights
        return _openness(syllable, u) * weights * VOWEL_GAIN

    def _append_next(self) -> None:
        r = self._random.uniforms(8, Stream.SPEECH, self._event, self._syllables.count)
        last = self._syllables.items[-1]
        if self._syllables_left_in_word == 0 and last.peak > 0.0:
            self._append(_Syllable(last.end, last.end + self._pause_length(r[0], r[1]), 0.0, 0.0, 0.0,
                                   last.weights))
            return
        if self._syllables_left_in_word == 0:
            self._syllables_left_in_word = _pick((0.3, 0.35, 0.25, 0.1), r[0]) + 1
        self._syllables_left_in_word -= 1
        keyframes = _pick((0.6, 0.3, 0.1), r[1]) + 2
        length = keyframes * self._keyframe * (0.85 + 0.3 * r[2])
        peak = 0.55 + 0.45 * r[3]
        # Inside a word the mouth only half-closes between syllables; it shuts at the word's end.
        open_to = 0.0 if self._syllables_left_in_word == 0 else peak * (0.05 + 0.2 * r[4])
        self._append(_Syllable(last.end, last.end + length, last.open_to, peak, open_to, self._vowel(r[5], r[6],
                                                                                                     r[7])))

    def _pause_length(self, long_chance: float, r: float) -> float:
        if long_chance < 0.15:  # a breath between sentences
            return self._keyframe * (4.0 + 4.0 * r)
        return self._keyframe * (1.0 + 2.0 * r)

    def _vowel(self, r_main: float, r_second: float, r_mix: float) -> np.ndarray:
        """Weights of the five vowels: one dominant, half the time a second one mixed in at up to 35 %."""
        main = _pick(self._vowel_odds, r_main)
        weights = np.zeros(len(VOWEL_MORPHS))
        weights[main] = 1.0
        if r_mix < 0.5:
            second = (main + 1 + int(r_second * (len(VOWEL_MORPHS) - 1))) % len(VOWEL_MORPHS)
            weights[second] = 0.7 * r_mix  # r_mix < 0.5, so at most 0.35
        return weights

    def _append(self, syllable: _Syllable) -> None:
        self._syllables.append(syllable.start, syllable)


def _openness(syllable: _Syllable, u: float) -> float:
    """Mouth opening over a syllable: ease from open_from up to the peak, then down to open_to."""
    if u < _SYLLABLE_PEAK_AT:
        x = smoothstep(u / _SYLLABLE_PEAK_AT)
        return syllable.open_from + (syllable.peak - syllable.open_from) * x
    x = smoothstep((u - _SYLLABLE_PEAK_AT) / (1.0 - _SYLLABLE_PEAK_AT))
    return syllable.peak + (syllable.open_to - syllable.peak) * x


def _pick(odds, r: float) -> int:
    """Index chosen with the given odds (summing to 1) by a uniform r in [0, 1)."""
    total = 0.0
    for i, p in enumerate(odds):
        total += p
        if r < total:
            return i
    return len(odds) - 1
