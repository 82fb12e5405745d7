"""The 28 emotion templates (one JSON file per GoEmotions label, next to this file) and their loader.

A template is a 45-number pose (see talkinghead.pose): the expression the character settles into for that
emotion. Each `<emotion>.json` holds `{"<morph name>": value}` for its non-zero morphs only; `neutral.json`
is `{}`. The animator adds blinking, breathing, sway and talking on top.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from talkinghead import pose

# The 28 GoEmotions labels, in this order everywhere: the one list (the classifier's labels are these; the
# SillyTavern extension's copy is held to it by tests/test_labels.py).
EMOTIONS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief",
    "joy", "love", "nervousness", "neutral", "optimism", "pride", "realization", "relief", "remorse",
    "sadness", "surprise",
)
TEMPLATE_DIR = Path(__file__).resolve().parent


class TemplateError(ValueError):
    """An emotion template names an unknown emotion or morph, or has a value that is not a number in range."""


def load_default_templates() -> dict[str, np.ndarray]:
    """The server's own templates: {emotion: 45-float32 pose}, a fresh copy each call."""
    return {name: template.copy() for name, template in _default_templates().items()}


def templates_from_json(obj: Any) -> dict[str, np.ndarray]:
    """Templates from a `load_emotion_templates` request body `{emotion: {morph: value}}`.

    `{}` gives the defaults; emotions not given keep their default; morphs left out of a given emotion are 0.
    Raises TemplateError naming the offending emotion or morph.
    """
    if not isinstance(obj, Mapping):
        raise TemplateError(f"emotion templates must be a JSON object {{emotion: {{morph: value}}}}, "
                            f"got {type(obj).__name__}")
    templates = load_default_templates()
    for emotion, morphs in obj.items():
        templates[emotion] = template_from_json(emotion, morphs)
    return templates


def template_from_json(emotion: str, morphs: Any) -> np.ndarray:
    """One emotion's template from `{morph: value}`; raises TemplateError naming the offender."""
    if emotion not in EMOTIONS:
        raise TemplateError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
    if not isinstance(morphs, Mapping):
        raise TemplateError(f"template for {emotion!r} must be a JSON object {{morph: value}}, "
                            f"got {type(morphs).__name__}")
    try:
        return pose.from_dict(morphs, strict=True)
    except pose.PoseError as e:
        raise TemplateError(f"emotion {emotion!r}: {e}") from None


@lru_cache(maxsize=1)
def _default_templates() -> dict[str, np.ndarray]:
    templates = {}
    for name in EMOTIONS:
        path = TEMPLATE_DIR / f"{name}.json"
        templates[name] = template_from_json(name, json.loads(path.read_text(encoding="utf-8")))
    return templates
