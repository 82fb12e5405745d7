"""The animation: the character's 45-number pose as a pure function of (events so far, seed, time).

Emotion transitions, blinking, breathing, sway and a talking mouth are layered on the current emotion's
template. Everything is driven by the wall clock given to `Animator.pose_at(t)`, never by how often it is
called:

* smooth motions are closed-form functions of the time since the event that started them (an exponential
  approach, a critically damped spring, a smoothstep), so 5 FPS and 60 FPS see the same pose at the same t;
* random events (blink times, sway targets, jitter, syllables) come from counter-based random numbers keyed
  by (seed, event count, slot index), so asking about a future t early (render-ahead) and again later gives
  the same answer, in any order of asking.

One file per motion, and the Animator that composes them:
    animator.py      Animator: the events and pose_at (its RLock guards everything below)
    sway.py          head and body sway among a few postures (a critically damped spring)
    micro_sway.py    the small drift on top of the sway (the original's per-tick jitter)
    blink.py         when the eyes blink and the lid's curve
    breathing.py     the breathing value's cycle
    mouth.py         the vowel morphs: the emotion's, or talking over them
    speech.py        random speech: syllables, words, pauses
    track.py         lip-sync playback of an analysed track (talkinghead.lipsync)
    keyed_random.py  the keyed random numbers; timing.py: the tick, approach, lazily drawn timelines

Threads: see animator.py; an Animator is safe to share, the motions inside it are not.
"""
from talkinghead.animation.animator import CONFUSION, FALLBACK_EMOTION, Animator
from talkinghead.animation.keyed_random import KeyedRandom
from talkinghead.animation.timing import TICK
from talkinghead.animation.track import MouthTrack

__all__ = ["Animator", "CONFUSION", "FALLBACK_EMOTION", "KeyedRandom", "MouthTrack", "TICK"]
