"""The Animator: the character's 45-number pose as a pure function of (events so far, seed, time), made of the
motions in this package.

`pose_at(t)` reads top to bottom: the emotion's template (approached exponentially after each change), the
sway (sway.py) and the micro sway on it (micro_sway.py), a blink over the eyes (blink.py), the mouth
(mouth.py: the emotion's, random speech from speech.py, or a lip-sync track from track.py), breathing
(breathing.py). Each command (`set_emotion`, `start_talking`, `stop_talking`, `play_track`, `stop_track`,
`set_templates`, `set_settings`) is an event: it snapshots what shows at its time t and starts the motions it
changes from there, so the pose stays continuous; its event count keys the new motions' random numbers.

Threads: through the engine, commands come from the HTTP threads and `pose_at` from the frame thread and the
smooth stream's workers (render-ahead). One lock, `Animator._lock` (an RLock), guards all of an Animator's
state: every public method takes it, and the motion objects it holds are reached only through those methods
(they are not thread-safe: they are drawn lazily and cached, so even `pose_at` changes them). Nothing here
calls out of the package while holding it, so no other lock is ever taken under it.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
from typing import Mapping

import numpy as np

from talkinghead import pose
from talkinghead.animation.blink import BlinkSchedule, apply_blink
from talkinghead.animation.breathing import Breathing
from talkinghead.animation.keyed_random import KeyedRandom
from talkinghead.animation.micro_sway import MicroSway
from talkinghead.animation.mouth import VOWEL_INDICES, Mouth
from talkinghead.animation.speech import Speech
from talkinghead.animation.sway import SwayTrack
from talkinghead.animation.timing import Approach
from talkinghead.animation.track import MouthTrack, TrackSpeech
from talkinghead.settings import AnimatorSettings

log = logging.getLogger(__name__)

FALLBACK_EMOTION = "neutral"
CONFUSION = "confusion"  # entering it allows rapid blinking for a while (as in the original animator)
_BREATHING = pose.INDEX["breathing_index"]


class Animator:
    """Pose = emotion template (with transitions) + sway + blink + talking mouth + breathing.

    Thread-safe: commands and `pose_at` may come from different threads (one RLock, see the module's top).
    """

    def __init__(self, templates: Mapping[str, np.ndarray], settings: AnimatorSettings | None = None,
                 seed: int | None = None, start_time: float = 0.0):
        self._lock = threading.RLock()
        self._templates = _checked_templates(templates)
        self._settings = settings or AnimatorSettings()
        self._random = KeyedRandom(seed if seed is not None else secrets.randbits(63))
        self._events = 0  # event count: part of every random key, so each event gets fresh random numbers
        self._last_event_time = start_time
        self._emotion = FALLBACK_EMOTION
        self._talking = False
        target = self._templates[FALLBACK_EMOTION]
        self._face = Approach(start_time, target, target, self._settings.pose_interpolator_step)
        self._sway = SwayTrack.start(self._random, 0, start_time, target, self._settings)
        self._blinks = BlinkSchedule(self._random, 0, start_time, None, -math.inf, self._settings)
        self._mouth = Mouth(start_time, np.zeros(len(VOWEL_INDICES)), None, self._settings)
        self._queued_track: tuple[MouthTrack, float, float] | None = None  # (track, offset s, rate): next start_talking
        self._breathing = Breathing(start_time, 0.0, self._settings.breathing_cycle_duration)
        self._micro_sway = MicroSway(self._random)  # keyed by the tick alone: no event changes it

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def emotion(self) -> str:
        return self._emotion

    @property
    def talking(self) -> bool:
        return self._talking

    @property
    def generation(self) -> int:
        """Changes on every event: work planned for the old future (render-ahead) is then stale."""
        return self._events

    @property
    def settings(self) -> AnimatorSettings:
        return self._settings

    @property
    def templates(self) -> dict[str, np.ndarray]:
        with self._lock:
            return dict(self._templates)

    # -- events --------------------------------------------------------------------------------------------
    def set_emotion(self, name: str, t: float) -> str:
        """Move toward emotion `name` from time t; an unknown name means neutral. Returns the name used."""
        with self._lock:
            if name not in self._templates:
                log.info("unknown emotion %r, using %r", name, FALLBACK_EMOTION)
                name = FALLBACK_EMOTION
            if name == self._emotion:
                return name
            t = self._begin_event(t)
            was_confused = self._emotion == CONFUSION
            self._emotion = name
            self._retarget_face(t)
            self._redraw_sway(t)
            if name == CONFUSION:
                self._reschedule_blinks(t, rapid_until=t + self._settings.blink_confusion_duration)
            elif was_confused and t < self._blinks.rapid_until:
                self._reschedule_blinks(t, rapid_until=-math.inf)
            return name

    def set_templates(self, templates: Mapping[str, np.ndarray], t: float) -> None:
        """Use new emotion templates from time t; the current emotion moves to its new template."""
        with self._lock:
            checked = _checked_templates(templates)
            if _same_templates(checked, self._templates):
                return  # the client re-sends `{}` on every load; nothing changes
            t = self._begin_event(t)
            self._templates = checked
            if self._emotion not in checked:
                self._emotion = FALLBACK_EMOTION
            self._retarget_face(t)
            self._redraw_sway(t)

    def set_settings(self, settings: AnimatorSettings, t: float) -> None:
        """Use new settings from time t; motions in progress continue smoothly under the new settings."""
        with self._lock:
            if settings == self._settings:
                return  # the client re-sends its settings on every load; nothing changes
            t = self._begin_event(t)
            old, self._settings = self._settings, settings
            self._retarget_face(t)
            # Keep heading for the current sway target unless the sway's own settings changed: a target
            # drawn under the old strength (say ±0.6) must not outlive a new one (say 0).
            same_sway = all(getattr(settings, k) == getattr(old, k) for k in
                            ("sway_morphs", "sway_macro_strength", "sway_micro_strength"))
            self._sway = SwayTrack.start(self._random, self._events, t, self._templates[self._emotion],
                                         settings, previous=self._sway, keep_target=same_sway)
            self._reschedule_blinks(t, rapid_until=self._blinks.rapid_until)
            self._breathing = Breathing(t, self._breathing.phase(t), settings.breathing_cycle_duration)
            self._restart_mouth(t, self._talking)

    def start_talking(self, t: float) -> None:
        """Speech-like mouth motion from t; or the track queued for this (`queue_track`). While a track
        plays this changes nothing (SillyTavern's TTS says start_talking around the clip it plays)."""
        with self._lock:
            if self._queued_track is not None:
                track, offset, rate = self._queued_track
                self._queued_track = None
                self._play(track, t - offset / rate, t, rate)
            elif not self._talking or self._track_ended(t):
                self._restart_mouth(self._begin_event(t), talking=True)

    def stop_talking(self, t: float) -> None:
        """The mouth returns smoothly to the emotion's shape (a playing track ends here)."""
        with self._lock:
            self._queued_track = None
            if self._talking:
                self._restart_mouth(self._begin_event(t), talking=False)

    def play_track(self, track: MouthTrack, start: float, t: float, rate: float = 1.0) -> None:
        """Lip-sync: from t the vowel morphs follow `track`, whose time 0 is at `start` (before t when the
        audio is already playing), played `rate` times as fast as recorded (the audio's playback rate).
        Random speech is off meanwhile; at the track's end the mouth returns smoothly to the emotion's, as it
        does on stop_talking or a new track."""
        with self._lock:
            self._queued_track = None
            self._play(track, start, t, rate)

    def stop_track(self, t: float) -> None:
        """End a lip-sync track (playing or queued) at t, the mouth gliding back; random talking goes on."""
        with self._lock:
            self._queued_track = None
            if isinstance(self._mouth.speech, TrackSpeech) and not self._track_ended(t):
                self._restart_mouth(self._begin_event(t), talking=False)

    def queue_track(self, track: MouthTrack, offset: float = 0.0, rate: float = 1.0) -> None:
        """Play `track` at `rate` from the next start_talking, `offset` s of it (track time) already played."""
        with self._lock:
            self._queued_track = (track, offset, rate)

    def _play(self, track: MouthTrack, start: float, t: float, rate: float = 1.0) -> None:
        t = self._begin_event(t)
        self._restart_mouth(t, talking=True, speech=TrackSpeech(track, start, rate))

    # -- the pose ------------------------------------------------------------------------------------------
    def pose_at(self, t: float, transient: bool = True) -> np.ndarray:
        """The pose at wall-clock time t: 45 float32 within pose.LOW..HIGH. transient=False: without the
        blink and the talking mouth (the emotion's own mouth), the face the smooth stream renders keyframes
        with."""
        with self._lock:
            result = self._face.value(t).astype(np.float64)
            result[self._sway.indices] = self._sway.position(t) + self._micro_sway.offsets(
                t, self._settings.sway_micro_strength, self._settings.pose_interpolator_step, self._sway.indices)
            if transient:
                apply_blink(result, self._blinks.closure(t))
                result[VOWEL_INDICES] = self._mouth.vowels(t, result[VOWEL_INDICES])
            result[_BREATHING] = self._breathing.value(t)
            return np.clip(result, pose.LOW, pose.HIGH).astype(np.float32)

    def blinks_between(self, t0: float, t1: float) -> list[float]:
        """Start times of the blinks scheduled in [t0, t1), as things stand now (for tests and tools)."""
        with self._lock:
            return self._blinks.starts_between(t0, t1)

    # -- helpers -------------------------------------------------------------------------------------------
    def _begin_event(self, t: float) -> float:
        """Count an event; events never go back in time (a late command acts at the latest event's time)."""
        t = max(t, self._last_event_time)
        self._last_event_time = t
        self._events += 1
        return t

    def _retarget_face(self, t: float) -> None:
        """Head for the current template from what shows at t (swaying morphs: where the sway has them, so a
        morph that stops swaying glides back to the template)."""
        start = self._face.value(t)
        start[self._sway.indices] = self._sway.position(t)
        self._face = Approach(t, start, self._templates[self._emotion], self._settings.pose_interpolator_step)

    def _redraw_sway(self, t: float) -> None:
        """A new sway target around the (new) emotion's head pose, reached smoothly from where the head is."""
        self._sway = SwayTrack.start(self._random, self._events, t, self._templates[self._emotion],
                                     self._settings, previous=self._sway)

    def _reschedule_blinks(self, t: float, rapid_until: float) -> None:
        self._blinks = BlinkSchedule(self._random, self._events, t, self._blinks.last_start(t), rapid_until,
                                     self._settings)

    def _restart_mouth(self, t: float, talking: bool, speech: Speech | TrackSpeech | None = None) -> None:
        """The mouth from t: `speech` if given (a lip-sync track), else random speech while talking, else the
        emotion's."""
        base_vowels = self._face.value(t)[VOWEL_INDICES]
        offset = self._mouth.vowels(t, base_vowels) - base_vowels  # carried over, then fades out
        self._talking = talking
        if speech is None and talking:
            speech = Speech(self._random, self._events, t, self._settings)
        self._mouth = Mouth(t, offset, speech, self._settings)

    def _track_ended(self, t: float) -> bool:
        speech = self._mouth.speech
        return isinstance(speech, TrackSpeech) and t >= speech.end


def _checked_templates(templates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Templates as 45-float32 vectors clipped to range (own copies); neutral is added (all zeros) if missing."""
    checked = {}
    for name, values in templates.items():
        array = np.asarray(values, dtype=np.float32)
        if array.shape != (pose.NUM_PARAMS,):
            raise ValueError(f"template {name!r} must have {pose.NUM_PARAMS} values, got shape {array.shape}")
        checked[name] = np.clip(array, pose.LOW, pose.HIGH)
    checked.setdefault(FALLBACK_EMOTION, pose.zeros())
    return checked


def _same_templates(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)
