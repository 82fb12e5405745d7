"""The mouth: the five vowel morphs, as the emotion has them, or talking (random speech or a lip-sync track)
over them, with what was showing at the last talk event fading out so the mouth never jumps.

Threads: a Mouth never changes after it is made, but the random Speech it holds grows as it is read; the
Animator replaces and reads it only under its RLock (talkinghead/animation/animator.py).
"""
from __future__ import annotations

import numpy as np

from talkinghead import pose
from talkinghead.animation.speech import Speech
from talkinghead.animation.timing import decay
from talkinghead.animation.track import TrackSpeech
from talkinghead.settings import VOWEL_MORPHS, AnimatorSettings

VOWEL_INDICES = [pose.INDEX[name] for name in VOWEL_MORPHS]  # the pose values the mouth drives
# Talking fades in faster than an emotion transition so the first syllable is not swallowed.
_TALK_FADE_IN_FACTOR = 3.0


class Mouth:
    """The vowel morphs: speech (random, or a lip-sync track) while talking, else the emotion's. `offset`
    (mouth minus emotion at t0) is what was showing when the last talk event came; it fades so the mouth
    never jumps. A track replaces the emotion's vowels at once (the sync is the point); after its end the
    mouth glides back to the emotion's."""

    def __init__(self, t0: float, offset: np.ndarray, speech: Speech | TrackSpeech | None,
                 settings: AnimatorSettings):
        self.t0, self.offset, self.speech = t0, offset, speech
        self._step = settings.pose_interpolator_step
        self._fade_in_step = 1.0 - (1.0 - self._step) ** _TALK_FADE_IN_FACTOR

    def vowels(self, t: float, emotion_vowels: np.ndarray) -> np.ndarray:
        if isinstance(self.speech, TrackSpeech):
            return self._track_vowels(t, emotion_vowels)
        carried = self.offset * decay(self._step, t - self.t0)
        if self.speech is None:
            return emotion_vowels + carried
        speaking = 1.0 - decay(self._fade_in_step, t - self.t0)
        return emotion_vowels + speaking * (self.speech.vowels(t) - emotion_vowels) + carried

    def _track_vowels(self, t: float, emotion_vowels: np.ndarray) -> np.ndarray:
        track = self.speech
        if t < track.end:
            return track.vowels(t) + self.offset * decay(self._step, t - self.t0)
        last = track.vowels(track.end) + self.offset * decay(self._step, track.end - self.t0)
        return emotion_vowels + (last - emotion_vowels) * decay(self._step, t - track.end)
