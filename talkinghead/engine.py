"""The talkinghead engine: one avatar — a character with its animator, its frame source and its stream — on
networks it may share with other avatars (talkinghead.shared). The HTTP module holds these and nothing else.

An avatar owns: its poser's image and caches; the animator (emotion, talking, the lip-sync track, settings);
its templates (template_sets); the capture override (capture); whether it renders (run_state); on a CPU the
smooth source with its two workers and caches; the renderer thread with its frame slot; its viewers.
Commands change state; the render thread asks for the pose at the current time and renders it. Nothing flows
back from the viewers but their number: with `idle_after`, rendering stops when nobody has watched for that
long and resumes when a viewer comes (the animation is a function of the wall clock).

Threads and locks: one lock per piece of state, inside the object it guards; the engine holds none around
another object's calls.
* HTTP threads send commands to the animator (its own lock), the TemplateSets (its lock, held while it hands
  the animator a new set), the PoseOverride (its lock) and the RunState (its lock, held while it starts or
  pauses the renderer and the workers); they change the character under both poser parts.
* The render thread asks the animator and the override for the pose at t, and renders it (exact) or
  composes it (smooth: SmoothSource.frame_at).
* The smooth source's two workers make faces and keyframes (SmoothSource's condition guards their state).
* The poser's networks are taken in turns (talkinghead.turns.PoserLocks: a face part and a body part, shared
  by every avatar on the same networks); the poser's image is replaced holding both.
* `lipsync_tracks`, a statistic, is counted under `_stats_lock`.
Lock order where one is held while another is taken: TemplateSets → animator; RunState → renderer and source
(their own events and conditions); a poser part → the source's condition. Nothing calls back up that order.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable

import numpy as np

from talkinghead import cpu, emotions, encode, lipsync, memory, pose as pose_mod
from talkinghead.animation import Animator
from talkinghead.capture import CaptureSource, PoseOverride
from talkinghead.image import load_character
from talkinghead.renderer import Renderer
from talkinghead.run_state import RunState
from talkinghead.settings import AnimatorSettings
from talkinghead.shared import SharedEngine
from talkinghead.smooth import SmoothSource, quantize_face
from talkinghead.stream import Viewers
from talkinghead.template_sets import TemplateSets

log = logging.getLogger(__name__)


class TalkingHead:
    """One avatar. Made alone, `TalkingHead(poser, smooth=..., ...)` makes its own SharedEngine of the options
    given; with `shared`, the options are the shared engine's and `poser` is one of its character_poser()s."""

    def __init__(self, poser, *, smooth: bool = False, description: dict | None = None, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic, idle_after: float | None = None,
                 keyframe_disk=None, shared: SharedEngine | None = None):
        """smooth: deliver target_fps frames from exact keyframes + interpolation (for a CPU that cannot
        render exact frames at target_fps); otherwise every frame is an exact render. idle_after: seconds
        without a viewer after which rendering stops (None: never). keyframe_disk: where the smooth stream
        keeps each character's keyframes across restarts (talkinghead.smooth.KeyframeDisk; None: nowhere)."""
        self.shared = shared or SharedEngine(poser, smooth=smooth, idle_after=idle_after,
                                             keyframe_disk=keyframe_disk, description=description, clock=clock)
        self.poser = poser
        self._clock = self.shared.clock
        self._poser_lock = self.shared.turns.for_avatar(self)  # this avatar's turns on the shared networks
        self.animator = Animator(emotions.load_default_templates(), AnimatorSettings(), seed=seed,
                                 start_time=self._clock())
        self.templates = TemplateSets(push=self._use_templates, in_use=lambda: self.animator.templates)
        self.capture = PoseOverride(on_change=self._capture_changed, ramp=self._frame_time)
        self.run_state = RunState(self._apply_running, lambda: self.viewers.count, self.shared.idle_after)
        self.viewers = Viewers(on_change=self.run_state.viewers_changed)
        self.source = SmoothSource(poser, self._pose_at, self._generation, self._fps, self._clock,
                                   base_pose_at=self._base_pose_at, urgent=self._urgent_generation,
                                   live=self.capture.driving,
                                   locks=self._poser_lock, disk=self.shared.keyframe_disk) \
            if self.shared.smooth else None
        self.renderer = Renderer(self._render_frame, fps=self._fps, clock=self._clock)
        self.slot = self.renderer.slot
        self._stats_lock = threading.Lock()
        self.lipsync_tracks = 0  # tracks received to drive the mouth (stats)
        if self.shared.template_store is not None:
            self.templates.use_store(self.shared.template_store)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, first_character: np.ndarray | None = None) -> None:
        """Load the first character, render its first frame here (so a viewer gets one at once), then run.
        The first character a server's first avatar starts with is what later avatars start with."""
        if first_character is not None:
            if self.shared.default_character is None:
                self.shared.default_character = first_character
            self._set_character(first_character)
            self.renderer.render_now()
        self.run_state.resume()

    def close(self) -> None:
        """Stop for good: the threads end (the renderer's, the workers'), the viewers' streams end."""
        self.run_state.close()
        self.renderer.close()
        if self.source:
            self.source.close()

    # -- commands ----------------------------------------------------------------------------------------
    def load(self, data: bytes) -> None:
        """Use an uploaded image as the character and resume. Raises ImageError; the old character stays."""
        rgba = load_character(data)
        self._set_character(rgba)
        self.run_state.resume()
        log.info("character loaded; animation running")

    def unload(self) -> None:
        self.animator.stop_track(self._clock())  # a lip-sync track in progress is for nobody now
        self._event()
        self.run_state.unload()
        log.info("animation paused (character, emotion and settings kept)")

    def start_talking(self) -> None:
        self.animator.start_talking(self._clock())
        self._event()

    def stop_talking(self) -> None:
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
        if start == "next_talking":
            self.animator.queue_track(track, offset_s, rate)
        else:
            self.animator.play_track(track, received - offset_s / rate, self._clock(), rate)
            self._event()
        with self._stats_lock:
            self.lipsync_tracks += 1
        log.info("lip-sync: %.2f s of audio (%.0f%% voiced) %s", track.duration_s, 100 * track.voiced_ratio,
                 "queued for the next start_talking" if start == "next_talking"
                 else f"playing from {offset_s * 1000:.0f} ms" + (f" at {rate:g}x" if rate != 1.0 else ""))
        return track

    def set_emotion(self, name: str) -> str:
        used = self.animator.set_emotion(name, self._clock())
        self._event()
        if used != name:
            log.info("unknown emotion %r; using %r", name, used)
        return used

    def load_emotion_templates(self, obj: dict) -> None:
        """`{}` resets to the server's templates. Raises emotions.TemplateError; old templates kept."""
        self.templates.load(obj)
        self._event()

    def load_animator_settings(self, obj: dict) -> None:
        """`{}` resets to defaults. Raises settings.SettingsError; old settings kept."""
        self.animator.set_settings(AnimatorSettings.from_json(obj), self._clock())
        self._event()

    def set_pose_override(self, source: CaptureSource | None) -> None:
        """Face capture drives the pose while `source` publishes (talkinghead.capture). None: no override."""
        self.capture.use(source)
        self._event()

    # -- the server's template set: built-in templates with the user's saved ones over them (manual poser) --
    def use_template_store(self, store) -> None:
        """Keep saved templates in `store` (for the avatars made later too) and use the ones it holds."""
        self.shared.template_store = store
        self.templates.use_store(store)
        self._event()

    def save_template(self, name: str, values: np.ndarray) -> None:
        """Make `values` the template of emotion `name`, kept across restarts; the animator uses it at once.
        Raises emotions.TemplateError (unknown emotion) or OSError (not saved; nothing changed)."""
        self.templates.save(name, values)
        self._event()

    def reset_template(self, name: str) -> np.ndarray:
        """Back to the built-in template of `name` (the saved one is forgotten); returns it."""
        builtin = self.templates.reset(name)
        self._event()
        return builtin

    def template_sets(self) -> dict:  # for the poser page (TemplateSets.describe)
        return self.templates.describe()

    # -- queries -----------------------------------------------------------------------------------------
    def render_still(self, pose: np.ndarray) -> bytes:
        """The exact PNG of the current character in `pose` (no cache, no approximation), rendered on the
        server's stills thread (shared.py says why). With a smooth stream the still takes the cores: the
        workers' runs in progress stop (a keyframe or a face is made again later; the stream goes on from the
        keyframes it has) and start again after it."""
        return self.shared.stills.submit(self._render_still, pose).result()

    def _render_still(self, pose: np.ndarray) -> bytes:
        with (self.source.workers_held() if self.source else contextlib.nullcontext()), self._poser_lock:
            rgba = self.poser.render(pose)
        memory.release_free_memory()  # an exact render's temporaries are ~200 MB; see talkinghead/memory.py
        return encode.png(rgba)

    def emotion_pose(self, name: str) -> np.ndarray:
        templates = self.animator.templates
        if name not in templates:
            raise KeyError(name)
        return np.array(templates[name], dtype=np.float32)

    def emotions(self) -> dict[str, dict[str, float]]:
        return {name: pose_mod.to_dict(values, skip_zeros=True) for name, values in self.animator.templates.items()}

    def stats(self) -> dict:
        with self._stats_lock:
            lipsync_tracks = self.lipsync_tracks
        return {
            "frames_rendered": self.renderer.frames_rendered,
            "render_fps": round(self.renderer.fps_last(5.0), 2),
            "target_fps": self._fps(),
            "ms_per_stage": {k: round(v, 2) for k, v in dict(
                self.source.timings if self.source else getattr(self.poser, "last_timings", {})).items()},
            "viewers": self.viewers.count,
            "state": self.run_state.state,
            "emotion": self.animator.emotion,
            "talking": self.animator.talking,
            "lipsync_tracks": lipsync_tracks,
            "cpu_seconds": cpu.cpu_seconds_by_thread(),
            "last_error": self.renderer.last_error,
            "mode": "smooth" if self.source else "exact",
            **(self.source.stats() if self.source else {}),
            **self.shared.description,
        }

    # -- what the parts are given ---------------------------------------------------------------------------
    def _fps(self) -> float:
        return self.animator.settings.target_fps

    def _frame_time(self) -> float:  # a capture's move to a new pose (talkinghead.capture): the next frame shows it
        return 1.0 / self._fps()

    def _use_templates(self, templates: dict[str, np.ndarray]) -> None:
        self.animator.set_templates(templates, self._clock())

    def _apply_running(self, running: bool) -> None:
        """Start or pause the renderer and the smooth source's workers (RunState's, under its lock)."""
        if running:
            self.renderer.start()
            if self.source:
                self.source.start()
        else:
            self.renderer.pause()
            if self.source:
                self.source.pause()

    def _event(self) -> None:
        """The animation's future changed: the smooth source drops the work it was doing for the old one."""
        if self.source:
            self.source.event()

    def _capture_changed(self) -> None:
        """A new capture pose (many a second): the smooth stream's workers look again, nothing is stopped."""
        if self.source:
            self.source.event(urgent=False)

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

    def _urgent_generation(self) -> int:
        """Changes on commands (not on capture updates): the smooth stream rushes their first face."""
        return self.animator.generation + self.capture.replaced()

    def _generation(self) -> int:
        """Changes on every event: the animator's and the capture's."""
        return self.animator.generation + self.capture.generation()

    def _pose_at(self, t: float) -> np.ndarray:
        """The pose shown at t. Eyebrow/face values are quantised (steps of 1/32, invisible) in every mode,
        so the smooth stream can reuse face-morpher outputs and still show exactly this pose's face."""
        return quantize_face(self.capture.apply(t, self.animator.pose_at(t)))

    def _base_pose_at(self, t: float) -> np.ndarray:
        """The pose at t with its resting face: no blink, no talking (a capture's mouth closed and eyes
        open). The smooth stream renders and looks up keyframes with it, so they serve every blink and
        mouth shape (the frame pastes its own face in)."""
        return quantize_face(self.capture.apply(t, self.animator.pose_at(t, transient=False), resting=True))

    def _render_frame(self, t: float) -> tuple[np.ndarray, dict]:
        if self.source:
            return self.source.frame_at(t)
        generation = self.animator.generation
        pose = self._pose_at(t)
        with self._poser_lock:
            return self.poser.render(pose), {"pose": pose, "generation": generation}
