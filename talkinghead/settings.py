"""Animator settings: the `load_animator_settings` keys, their defaults and their valid ranges.

Names follow SillyTavern-Extras' talkinghead `animator.json`, so a user's settings file keeps working.
Every time-based setting is in seconds of wall-clock time; rates are given per 1/25 s ("tick"), as in the
original animator at its default 25 FPS, but the animator applies them frame-rate independently.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from talkinghead import pose

VOWEL_MORPHS: tuple[str, ...] = ("mouth_aaa_index", "mouth_iii_index", "mouth_uuu_index", "mouth_eee_index",
                                 "mouth_ooo_index")
SWAYABLE_MORPHS: tuple[str, ...] = ("head_x_index", "head_y_index", "neck_z_index", "body_y_index",
                                    "body_z_index")
assert all(name in pose.INDEX for name in VOWEL_MORPHS + SWAYABLE_MORPHS)


# Below this a per-tick blink chance gives waits beyond float range (the animator draws a geometric wait): a
# blink every few weeks at most; 0 means never.
MIN_BLINK_PROBABILITY = 1e-9


class SettingsError(ValueError):
    """A settings key is unknown, or its value has the wrong type or is out of range."""


def _number(default: float, low: float, high: float, doc: str, *, integer: bool = False) -> Any:
    """A numeric setting valid in [low, high]; `integer` rejects non-integers."""
    return field(default=default, metadata={"kind": "int" if integer else "float", "low": low, "high": high,
                                            "doc": doc})


@dataclass(frozen=True)
class AnimatorSettings:
    """All animator settings; construct with keywords or from a request body with `from_json`."""

    target_fps: int = _number(25, 1, 60, "frames per second rendered and streamed", integer=True)
    pose_interpolator_step: float = _number(
        0.1, 0.01, 1.0, "fraction of the remaining distance to the emotion's pose covered per 1/25 s "
                        "(0.1: half-life about 0.26 s)")

    blink_interval_min: float = _number(2.0, 0.0, 60.0, "shortest time from one blink to the next, s")
    blink_interval_max: float = _number(5.0, 0.0, 60.0, "longest no-blink time drawn after a blink, s")
    blink_probability: float = _number(0.03, 0.0, 1.0, "chance of starting a blink per 1/25 s, once allowed")
    blink_confusion_duration: float = _number(
        10.0, 0.0, 600.0, "after entering 'confusion', rapid blinking (no minimum interval) for this long, s")
    blink_duration: float = _number(0.2, 0.05, 1.0, "time for the eyes to close and reopen, s")

    talking_fps: float = _number(12.0, 1, 60, "mouth keyframes per second while talking")
    talking_morph: str = field(default="mouth_aaa_index", metadata={
        "kind": "choice", "choices": VOWEL_MORPHS, "doc": "the vowel used most while talking"})

    sway_morphs: tuple[str, ...] = field(default=SWAYABLE_MORPHS, metadata={
        "kind": "subset", "choices": SWAYABLE_MORPHS, "doc": "rotation morphs that sway"})
    sway_interval_min: float = _number(5.0, 0.1, 600.0, "shortest time between new sway targets, s")
    sway_interval_max: float = _number(10.0, 0.1, 600.0, "longest time between new sway targets, s")
    sway_macro_strength: float = _number(0.6, 0.0, 1.0, "sway targets lie within ± this of the emotion's value")
    sway_micro_strength: float = _number(0.02, 0.0, 0.2, "± jitter added to the sway per 1/25 s")
    sway_postures: int = _number(
        3, 0, 16, "the sway moves among this many postures of each emotion, the same ones every time (on a CPU "
                  "their keyframes are then made once); 0: a new random target every time", integer=True)

    breathing_cycle_duration: float = _number(4.0, 0.5, 60.0, "one full breath, s")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _validated(f, getattr(self, f.name)))
        _check_ordered(self, "blink_interval_min", "blink_interval_max")
        _check_ordered(self, "sway_interval_min", "sway_interval_max")
        if 0.0 < self.blink_probability < MIN_BLINK_PROBABILITY:  # the wait drawn from it would be infinite
            raise SettingsError(f"animator setting 'blink_probability' = {self.blink_probability:g} is too small: "
                                f"use 0 for no blinks, or at least {MIN_BLINK_PROBABILITY:g}")

    @classmethod
    def from_json(cls, obj: Any) -> AnimatorSettings:
        """Settings from a request body: `{}` gives the defaults, given keys replace them.

        Raises SettingsError naming the offending key and its valid range.
        """
        if not isinstance(obj, Mapping):
            raise SettingsError(f"animator settings must be a JSON object, got {type(obj).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in obj:
            if key not in known:
                raise SettingsError(f"unknown animator setting {_short(key)}; known: {', '.join(sorted(known))}")
        return cls(**obj)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def describe() -> dict[str, str]:
        """{key: "default; valid range; meaning"} for documentation and error pages."""
        return {f.name: f"default {f.default!r}; {_valid_range(f)}; {f.metadata['doc']}"
                for f in dataclasses.fields(AnimatorSettings)}


def _valid_range(f: dataclasses.Field) -> str:
    meta = f.metadata
    if meta["kind"] == "int":
        return f"an integer in [{meta['low']:g}, {meta['high']:g}]"
    if meta["kind"] == "float":
        return f"a number in [{meta['low']:g}, {meta['high']:g}]"
    if meta["kind"] == "choice":
        return f"one of {', '.join(meta['choices'])}"
    return f"a list of distinct names from {', '.join(meta['choices'])}"


def _validated(f: dataclasses.Field, value: Any) -> Any:
    """The value normalised (lists become tuples), or SettingsError naming the key and its valid range."""
    kind = f.metadata["kind"]
    bad = SettingsError(f"animator setting {f.name!r} = {_short(value)} is invalid: must be {_valid_range(f)}")
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise bad
        if kind == "int" and value != int(value):
            raise bad
        if not f.metadata["low"] <= value <= f.metadata["high"]:
            raise bad
        return int(value) if kind == "int" else float(value)
    if kind == "choice":
        if value not in f.metadata["choices"]:
            raise bad
        return value
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise bad
    if len(set(value)) != len(value) or not all(v in f.metadata["choices"] for v in value):
        raise bad
    return tuple(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range (JSON allows any number of digits)
        return False


def _short(value: Any) -> str:
    """repr(value), cut to 60 characters: a message need not echo a huge request back."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_ordered(settings: AnimatorSettings, low_key: str, high_key: str) -> None:
    low, high = getattr(settings, low_key), getattr(settings, high_key)
    if low > high:
        raise SettingsError(f"animator setting {low_key!r} = {low:g} must not exceed {high_key!r} = {high:g}")
