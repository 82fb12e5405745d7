"""A smooth stream on a slow CPU: exact keyframes, and in-between frames that cost one warp.

An exact THA3 frame costs ~0.3–0.5 s on 2 cores, but most of it (body rotator + editor) only depends on the
six rotation values, which move slowly and smoothly. So:

* **Keyframes** are exact renders at a fixed grid of times (every `keyframe_interval` s), rendered ahead of
  the clock by a worker thread (the animator's idle motion is a pure function of time). Of each keyframe we
  keep the editor's outputs: its warp grid, colour change and colour-change alpha.
* **Faces**: the face morpher's output depends only on the 39 eyebrow/face values. The engine quantises those
  (`quantize_face`) so the same few shapes recur (blink levels, mouth shapes), and each is computed once and
  kept in a memory-capped LRU cache. The worker fills it ahead of the clock for the coming frames.
* **A delivered frame** at time t takes the face at t's exact face pose, blends the two neighbouring
  keyframes' editor outputs by time, and applies them: one `grid_sample` and a blend, as the editor itself
  does. At a keyframe time this *is* the exact frame; in between the rotation is interpolated.

Events (set_emotion, talking, new settings or templates) change the future: keyframes ahead of the clock
are then dropped and rendered again, and the face is always the one of the current pose, so an event shows
in the next frame that finds its face in the cache (the worker computes it first).

The parts:
  faces.py         the face lattice (quantize_face, face_key) and the LRU face cache
  keyframes.py     a keyframe (the editor's outputs) and the store: bracket a time, keep / drop rules
  compose.py       a frame from two keyframes and a face: blend their outputs, apply them (compose)
  schedule.py      the two workers' threads and what each makes next
  cancellation.py  the poser's two locks, and stopping work for a future or a character that is gone
  threads.py       thread counts and priorities (the frame thread first), the backend compiled to match
  source.py        SmoothSource: frame_at for the renderer, and making a face or a keyframe
"""
from talkinghead.smooth.cancellation import NETWORKS, Cancellation, PoserLocks
from talkinghead.smooth.compose import InBetween, compose
from talkinghead.smooth.faces import FACE_BOX, FACE_STEPS, VOWEL_STEPS, VOWELS, FaceCache, face_key, quantize_face
from talkinghead.smooth.keyframes import Keyframe, KeyframeStore
from talkinghead.smooth.schedule import (KEYFRAME_DUTY, KEYFRAME_LOOKAHEAD, KEYFRAME_RESERVE,
                                         KEYFRAMES_BEFORE_FAR_FACES, Animation, WorkScheduler)
from talkinghead.smooth.source import SmoothSource
from talkinghead.smooth.threads import SMOOTH_BACKEND_THREADS, WORKER_NICENESS, apply_backend

__all__ = ["NETWORKS", "Cancellation", "PoserLocks", "InBetween", "compose", "FACE_BOX", "FACE_STEPS",
           "VOWEL_STEPS", "VOWELS", "FaceCache", "face_key", "quantize_face", "Keyframe", "KeyframeStore",
           "KEYFRAME_DUTY", "KEYFRAME_LOOKAHEAD", "KEYFRAME_RESERVE", "KEYFRAMES_BEFORE_FAR_FACES", "Animation",
           "WorkScheduler", "SmoothSource", "SMOOTH_BACKEND_THREADS", "WORKER_NICENESS", "apply_backend"]
