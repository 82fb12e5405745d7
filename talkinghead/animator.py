"""The old import path of the animator, kept for importers written before it became the package
talkinghead.animation (one file per motion). New code imports talkinghead.animation."""
from talkinghead.animation import CONFUSION, FALLBACK_EMOTION, TICK, Animator, KeyedRandom, MouthTrack

__all__ = ["Animator", "CONFUSION", "FALLBACK_EMOTION", "KeyedRandom", "MouthTrack", "TICK"]
