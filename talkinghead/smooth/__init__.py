"""A smooth stream on a slow CPU: exact keyframes stored by pose, and frames that blend the nearest ones.

An exact THA3 frame costs ~0.3–0.5 s on 2 cores, but most of it (body rotator + editor) only depends on the
six rotation values and the resting face, which move slowly, and come back to where they were: the idle sway
and breathing, talking, an emotion seen before. So:

* **Keyframes** are exact renders at poses the character goes to; of each we keep the editor's outputs (its
  warp, colour change and colour-change alpha), by pose, up to a memory budget, and on disk per character.
  A worker renders one where the coming frames (the animation is a pure function of time, known seconds
  ahead; a face capture holds its latest pose) would be served badly by those there are.
* **Faces**: the face morpher's output depends only on the 39 eyebrow/face values. The engine quantises those
  (`quantize_face`) so the same few shapes recur (blink levels, mouth shapes), and each is computed once and
  kept in a memory-capped LRU cache. The other worker fills it ahead of the clock for the coming frames.
* **A delivered frame** takes the face at its exact face pose, blends the editor outputs of the keyframes
  nearest its pose by weights that reproduce the pose (interpolation.py), and applies them: one warp and a
  blend, as the editor itself does. At a keyframe's pose this *is* the exact frame; elsewhere the rotation is
  interpolated; a pose far from every keyframe (a sudden capture pose) shows at once from the nearest, and
  sharpens as the worker renders keyframes around it.

The parts:
  faces.py          the face lattice (quantize_face, face_key) and the LRU face cache
  interpolation.py  the keyframe space (rotation in gaps, resting face) and a frame's blend weights
  keyframes.py      a keyframe (the editor's outputs) and the store: blends for a pose, the memory budget
  region.py         where a character can show: the part of the frame keyframes keep and frames are made in
  disk.py           keyframes kept on disk per character (image and model), refused when they don't match
  compose.py        a frame from keyframes and a face: blend their outputs, apply them (compose)
  schedule.py       the two workers' threads and what each makes next
  cancellation.py   stopping work for a future or a character that is gone (the poser's two locks, taken in
                    turns by the avatars that share them: talkinghead/turns.py)
  threads.py        thread counts and priorities (the frame thread first), the backend compiled to match
  source.py         SmoothSource: frame_at for the renderer, and making a face or a keyframe
"""
from talkinghead.smooth.cancellation import ANY, NETWORKS, Cancellation
from talkinghead.smooth.compose import Blender, compose
from talkinghead.smooth.disk import KeyframeDisk
from talkinghead.smooth.faces import FACE_BOX, FACE_STEPS, VOWEL_STEPS, VOWELS, FaceCache, face_key, quantize_face
from talkinghead.smooth.keyframes import Keyframe, KeyframeStore
from talkinghead.smooth.schedule import KEYFRAME_LOOKAHEAD, MAX_ERROR, Animation, WorkScheduler
from talkinghead.smooth.source import SmoothSource
from talkinghead.smooth.threads import WORKER_NICENESS, apply_backend, smooth_backend_threads
from talkinghead.turns import PoserLocks

__all__ = ["ANY", "NETWORKS", "Cancellation", "PoserLocks", "Blender", "compose", "KeyframeDisk", "FACE_BOX",
           "FACE_STEPS", "VOWEL_STEPS", "VOWELS", "FaceCache", "face_key", "quantize_face", "Keyframe",
           "KeyframeStore", "KEYFRAME_LOOKAHEAD", "MAX_ERROR", "Animation", "WorkScheduler", "SmoothSource",
           "WORKER_NICENESS", "apply_backend", "smooth_backend_threads"]
