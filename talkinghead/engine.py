"""The talkinghead engine: one character, one animator, one renderer. The HTTP module holds only this.

Commands (load, set_emotion, start_talking, …) change state under a lock; the render thread reads the
animator's pose for the current time and renders it. Nothing flows back from the viewers but their number:
with `idle_after`, rendering stops when nobody has watched for that long and resumes when a viewer comes
(the animation is a function of the wall clock, so it picks up where it would be).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable

import numpy as np

from talkinghead import cpu, emotions, encode, lipsync, memory, pose as pose_mod
from talkinghead.animator import Animator
from talkinghead.image import load_character
from talkinghead.renderer import Renderer
from talkinghead.settings import AnimatorSettings
from talkinghead.smooth import VOWELS, PoserLocks, SmoothSource, quantize_face
from talkinghead.stream import Viewers

log = logging.getLogger(__name__)

# The face values a capture's resting face leaves out (closed mouth, open eyes), as the animator's does.
_TRANSIENT = [*VOWELS, pose_mod.INDEX["eye_wink_left_index"], pose_mod.INDEX["eye_wink_right_index"]]


class TalkingHead:
    def __init__(self, poser, *, smooth: bool = False, description: dict | None = None, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic, idle_after: float | None = None,
                 keyframe_disk=None):
        """smooth: deliver target_fps frames from exact keyframes + interpolation (for a CPU that cannot
        render exact frames at target_fps); otherwise every frame is an exact render. idle_after: seconds
        without a viewer after which rendering stops (None: never). keyframe_disk: where the smooth stream
        keeps each character's keyframes across restarts (talkinghead.smooth.KeyframeDisk; None: nowhere)."""
        self.poser = poser
        self.description = dict(description or {})
        self._clock = clock
        self._state_lock = threading.Lock()   # animator state: commands write, the render thread reads
        self._poser_lock = PoserLocks()  # the poser is not re-entrant; `with` takes all of it
        self._default_templates = emotions.load_default_templates()
        self.animator = Animator(self._default_templates, AnimatorSettings(), seed=seed, start_time=clock())
        self.idle_after = idle_after
        self._run_lock = threading.Lock()  # the running state below, and the renderer/workers following it
        self._unloaded = False  # the client said `unload` (until the next `load`)
        self._idle = False  # nobody watched for idle_after seconds (until a viewer comes)
        self._idle_timer: threading.Timer | None = None
        self.viewers = Viewers(on_change=self._viewers_changed)
        fps = lambda: self.animator.settings.target_fps  # noqa: E731
        self.source = SmoothSource(poser, self._pose_at, self._generation, fps, clock,
                                   base_pose_at=self._base_pose_at, urgent=self._urgent_generation,
                                   locks=self._poser_lock, disk=keyframe_disk) if smooth else None
        self.renderer = Renderer(self._render_frame, fps=fps, clock=clock)
        self.slot = self.renderer.slot
        self.lipsync_tracks = 0  # tracks received to drive the mouth (stats)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, first_character: np.ndarray | None = None) -> None:
        """Load the first character, render its first frame here (so a viewer gets one at once), then run."""
        if first_character is not None:
            self._set_character(first_character)
            self.renderer.render_now()
        self._resume()

    def close(self) -> None:
        with self._run_lock:
            self._cancel_idle_timer()
        self.renderer.close()
        if self.source:
            self.source.close()

    # -- commands ----------------------------------------------------------------------------------------
    def load(self, data: bytes) -> None:
        """Use an uploaded image as the character and resume. Raises ImageError; the old character stays."""
        rgba = load_character(data)
        self._set_character(rgba)
        self._resume()
        log.info("character loaded; animation running")

    def unload(self) -> None:
        with self._state_lock:
            self.animator.stop_track(self._clock())  # a lip-sync track in progress is for nobody now
        self._event()
        with self._run_lock:
            self._unloaded = True
            self._apply_running()
        log.info("animation paused (character, emotion and settings kept)")

    def start_talking(self) -> None:
        with self._state_lock:
            self.animator.start_talking(self._clock())
        self._event()

    def stop_talking(self) -> None:
        with self._state_lock:
            self.animator.stop_talking(self._clock())
        self._event()

    def lipsync(self, audio: bytes, *, start: str = "now", offset_s: float = 0.0,
                drive: bool = True, rate: float = 1.0) -> lipsync.Track:
        """Analyse speech audio into a mouth track; with `drive`, the mouth follows it: from now, `offset_s`
        of the audio already played (playback under way), or (start="next_talking") from the next
        start_talking; `rate` times as fast as recorded (the client's playback rate). Raises
        lipsync.AudioError; then nothing changes."""
        received = self._clock()  # the analysis takes a while: the audio plays on meanwhile
        track = lipsync.analyse(audio)
        if not drive:
            return track
        with self._state_lock:
            if start == "next_talking":
                self.animator.queue_track(track, offset_s, rate)
            else:
                self.animator.play_track(track, received - offset_s / rate, self._clock(), rate)
            self.lipsync_tracks += 1
        if start != "next_talking":
            self._event()
        log.info("lip-sync: %.2f s of audio (%.0f%% voiced) %s", track.duration_s, 100 * track.voiced_ratio,
                 "queued for the next start_talking" if start == "next_talking"
                 else f"playing from {offset_s * 1000:.0f} ms" + (f" at {rate:g}x" if rate != 1.0 else ""))
        return track

    def set_emotion(self, name: str) -> str:
        with self._state_lock:
            used = self.animator.set_emotion(name, self._clock())
        self._event()
        if used != name:
            log.info("unknown emotion %r; using %r", name, used)
        return used

    def load_emotion_templates(self, obj: dict) -> None:
        """`{}` resets to the server's templates. Raises emotions.TemplateError; old templates kept."""
        templates = self._default_templates if not obj else emotions.templates_from_json(obj)
        with self._state_lock:
            self.animator.set_templates(templates, self._clock())
        self._event()

    def load_animator_settings(self, obj: dict) -> None:
        """`{}` resets to defaults. Raises settings.SettingsError; old settings kept."""
        settings = AnimatorSettings.from_json(obj)
        with self._state_lock:
            self.animator.set_settings(settings, self._clock())
        self._event()

    # -- the server's template set: built-in templates with the user's saved ones over them (manual poser) --
    _template_store = None  # talkinghead.user_templates.TemplateStore, once use_template_store is called

    def use_template_store(self, store) -> None:
        """Keep saved templates in `store` and use the ones it already holds: they replace the built-in
        ones in the server's set (what `load_emotion_templates({})` resets to) and in the animator."""
        server_set = {**emotions.load_default_templates(), **store.load()}
        with self._state_lock:
            self._template_store = store
            self._default_templates = server_set
            self.animator.set_templates(server_set, self._clock())
        self._event()

    def save_template(self, name: str, values: np.ndarray) -> None:
        """Make `values` the template of emotion `name`, kept across restarts; the animator uses it at once.
        Raises emotions.TemplateError (unknown emotion) or OSError (not saved; nothing changed)."""
        values = self._checked_template(name, values)
        if self._template_store is not None:
            self._template_store.save(name, values)
        self._replace_template(name, values)

    def reset_template(self, name: str) -> np.ndarray:
        """Back to the built-in template of `name` (the saved one is forgotten); returns it."""
        builtin = self._checked_template(name, emotions.load_default_templates().get(name, pose_mod.zeros()))
        if self._template_store is not None:
            self._template_store.remove(name)
        self._replace_template(name, builtin)
        return builtin

    def template_sets(self) -> dict:
        """For the poser page: the built-in templates, the server's (built-in + saved) and which are saved."""
        store = self._template_store
        with self._state_lock:
            server_set = dict(self._default_templates)
        def as_json(templates):
            return {name: pose_mod.to_dict(values, skip_zeros=True) for name, values in templates.items()}

        return {"builtin": as_json(emotions.load_default_templates()), "server": as_json(server_set),
                "saved": sorted(store.saved()) if store else [],
                "persistent": bool(store and store.persistent)}

    @staticmethod
    def _checked_template(name: str, values: np.ndarray) -> np.ndarray:
        if name not in emotions.EMOTIONS:
            raise emotions.TemplateError(f"unknown emotion {name!r}; known: {', '.join(emotions.EMOTIONS)}")
        return np.array(values, dtype=np.float32).reshape(pose_mod.NUM_PARAMS)

    def _replace_template(self, name: str, values: np.ndarray) -> None:
        """One emotion's template in the server's set and in the animator's current templates (which may be a
        client's own, from load_emotion_templates: the user just posed this one and wants to see it)."""
        with self._state_lock:
            self._default_templates = {**self._default_templates, name: values}
            self.animator.set_templates({**self.animator.templates, name: values}, self._clock())
        self._event()

    # -- queries -----------------------------------------------------------------------------------------
    def render_still(self, pose: np.ndarray) -> bytes:
        """The exact PNG of the current character in `pose` (no cache, no approximation). With a smooth
        stream the still takes the cores: the workers' runs in progress stop (a keyframe or a face is made
        again later; the stream goes on from the keyframes it has) and start again after it."""
        with (self.source.workers_held() if self.source else contextlib.nullcontext()), self._poser_lock:
            rgba = self.poser.render(pose)
        memory.release_free_memory()  # an exact render's temporaries are ~200 MB; see talkinghead/memory.py
        return encode.png(rgba)

    def emotion_pose(self, name: str) -> np.ndarray:
        with self._state_lock:
            templates = self.animator.templates
        if name not in templates:
            raise KeyError(name)
        return np.array(templates[name], dtype=np.float32)

    def emotions(self) -> dict[str, dict[str, float]]:
        with self._state_lock:
            templates = self.animator.templates
        return {name: pose_mod.to_dict(values, skip_zeros=True) for name, values in templates.items()}

    def stats(self) -> dict:
        with self._state_lock:
            emotion, talking = self.animator.emotion, self.animator.talking
            fps = self.animator.settings.target_fps
        return {
            "frames_rendered": self.renderer.frames_rendered,
            "render_fps": round(self.renderer.fps_last(5.0), 2),
            "target_fps": fps,
            "ms_per_stage": {k: round(v, 2) for k, v in dict(
                self.source.timings if self.source else getattr(self.poser, "last_timings", {})).items()},
            "viewers": self.viewers.count,
            "state": self._state(),
            "emotion": emotion,
            "talking": talking,
            "lipsync_tracks": self.lipsync_tracks,
            "cpu_seconds": cpu.cpu_seconds_by_thread(),
            "last_error": self.renderer.last_error,
            "mode": "smooth" if self.source else "exact",
            **self._smooth_stats(),
            **self.description,
        }

    def _smooth_stats(self) -> dict:
        if not self.source:
            return {}
        s = self.source
        return {"keyframes_rendered": s.keyframes_rendered, "keyframe_ms": round(s.last_keyframe_ms, 1),
                "keyframes": {"stored": len(s.keyframes), "rendered": s.keyframes_rendered,
                              "loaded_from_disk": s.keyframes_loaded, "recalled_from_disk": s.keyframes_recalled, "evicted": s.keyframes.evicted,
                              "megabytes": round(s.keyframes.nbytes / 2 ** 20, 1),
                              "frame_error": round(s.last_blend_error, 4)},
                "face_cache": {"entries": len(s.faces), "hits": s.faces.hits, "misses": s.faces.misses},
                "stale_face_frames": s.stale_frames}

    # -- running or not ---------------------------------------------------------------------------------
    def _state(self) -> str:
        with self._run_lock:
            return "paused" if self._unloaded else "idle" if self._idle else "running"

    def _resume(self) -> None:
        """Render (a new character, or start-up; also after unload): also with nobody watching, for idle_after
        seconds, so the slot holds this character's frames when the first viewer comes."""
        with self._run_lock:
            self._unloaded = False
            self._idle = False
            if self.viewers.count == 0:
                self._arm_idle_timer()
            self._apply_running()

    def _viewers_changed(self, count: int) -> None:
        with self._run_lock:
            if count > 0:
                self._cancel_idle_timer()
                if self._idle:
                    self._idle = False
                    log.info("a viewer came: rendering resumed")
            else:
                self._arm_idle_timer()
            self._apply_running()

    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        if self.idle_after is not None:
            timer = threading.Timer(self.idle_after, lambda: self._idle_timeout(timer))
            timer.daemon = True
            self._idle_timer = timer
            timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_timeout(self, timer: threading.Timer) -> None:
        with self._run_lock:
            if timer is self._idle_timer and self.viewers.count == 0:  # not cancelled or re-armed meanwhile
                self._idle = True
                self._idle_timer = None
                log.info("no viewer for %g s: rendering stopped until one comes", self.idle_after)
                self._apply_running()

    def _apply_running(self) -> None:
        """Start or pause the renderer and the smooth source's workers as the state says (under _run_lock)."""
        if self._unloaded or self._idle:
            self.renderer.pause()
            if self.source:
                self.source.pause()
        else:
            self.renderer.start()
            if self.source:
                self.source.start()

    # -- internals ---------------------------------------------------------------------------------------

    def _event(self) -> None:
        """The animation's future changed: the smooth source drops the work it was doing for the old one."""
        if self.source:
            self.source.event()

    def _set_character(self, rgba: np.ndarray) -> None:
        if self.source:
            self.source.image_coming()  # the workers' work is the old character's: don't wait for it
        try:
            with self._poser_lock:
                self.poser.set_image(rgba)
        except BaseException:
            if self.source:
                self.source.image_kept()
            raise
        if self.source:
            self.source.image_changed()

    def _pose_at(self, t: float) -> np.ndarray:
        """The pose shown at t. Eyebrow/face values are quantised (steps of 1/32, invisible) in every mode,
        so the smooth stream can reuse face-morpher outputs and still show exactly this pose's face."""
        with self._state_lock:
            return quantize_face(self._overridden(t, self.animator.pose_at(t)))

    def _base_pose_at(self, t: float) -> np.ndarray:
        """The pose at t with its resting face: no blink, no talking (a capture's mouth closed and eyes
        open). The smooth stream renders and looks up keyframes with it, so they serve every blink and
        mouth shape (the frame pastes its own face in)."""
        with self._state_lock:
            pose = self._overridden(t, self.animator.pose_at(t, transient=False))
            if self._override is not None:
                pose[_TRANSIENT] = 0.0
            return quantize_face(pose)

    # -- pose override: face capture drives the pose (talkinghead.mocap.Puppeteer) ---------------------------
    _override = None  # override_at(t) -> (values, weight) | None; generation; on_change and ramp are set here
    _override_base = 0  # generations of the overrides replaced, so the sum below never repeats

    def set_pose_override(self, source) -> None:
        """While `source.override_at(t)` gives (values, weight), the pose is weight × values + (1 − weight) ×
        the animator's, breathing left to the animator. The source calls on_change() when its future changes
        (an event) and waits ramp() s (the smoothing: a frame; in smooth mode what a face and a keyframe
        cost, the soonest the stream can show a new head pose) before the next. None: no override."""
        if source is not None:
            source.on_change = self._capture_changed
            source.ramp = lambda: 1.0 / self.animator.settings.target_fps  # any pose shows in the next frame
        with self._state_lock:
            if self._override is not None:
                self._override_base += self._override.generation + 1
            self._override = source
        self._event()

    def _capture_changed(self) -> None:
        """A new capture pose (many a second): the smooth stream's workers look again, nothing is stopped."""
        if self.source:
            self.source.event(urgent=False)

    def _urgent_generation(self) -> int:
        """Changes on commands (not on capture updates): the smooth stream rushes their first face."""
        return self.animator.generation + self._override_base

    def _generation(self) -> int:
        """Changes on every event: the animator's and the override's."""
        override = self._override
        return self.animator.generation + self._override_base + (override.generation if override else 0)

    def _overridden(self, t: float, pose: np.ndarray) -> np.ndarray:
        found = self._override.override_at(t) if self._override is not None else None
        if found is None:
            return pose
        values, weight = found
        breathing = pose[pose_mod.INDEX["breathing_index"]]
        pose = (weight * values + (1.0 - weight) * pose).astype(np.float32)
        pose[pose_mod.INDEX["breathing_index"]] = breathing
        return pose

    def _render_frame(self, t: float) -> tuple[np.ndarray, dict]:
        if self.source:
            return self.source.frame_at(t)
        generation = self.animator.generation
        pose = self._pose_at(t)
        with self._poser_lock:
            return self.poser.render(pose), {"pose": pose, "generation": generation}
