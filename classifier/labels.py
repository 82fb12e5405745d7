"""The 28 GoEmotions labels the avatar has templates for, their coarse families, and the table that maps a
foreign classifier's labels onto them.

The label set is the avatar's: one emotion template each (talkinghead.emotions.EMOTIONS, the one source, which
tests/test_labels.py holds the SillyTavern extension and docs/api.md to). On the classifier's side the built-in
head, the custom-model adapter, the HTTP module and the accuracy test all read it from here.
"""
from __future__ import annotations

import re

from talkinghead.emotions import EMOTIONS

LABELS: tuple[str, ...] = EMOTIONS
NEUTRAL = "neutral"

# Coarse families (after Demszky et al., "GoEmotions", 2020: the Ekman grouping, with disgust folded into
# anger-like). Used to score "close enough" answers: an avatar showing annoyance for anger looks right, one
# showing joy for grief does not.
FAMILIES: dict[str, tuple[str, ...]] = {
    "joy-like": ("admiration", "amusement", "approval", "caring", "desire", "excitement", "gratitude", "joy",
                 "love", "optimism", "pride", "relief"),
    "anger-like": ("anger", "annoyance", "disapproval", "disgust"),
    "sadness-like": ("disappointment", "embarrassment", "grief", "remorse", "sadness"),
    "fear-like": ("fear", "nervousness"),
    "surprise-like": ("confusion", "curiosity", "realization", "surprise"),
    "neutral": ("neutral",),
}
FAMILY_OF: dict[str, str] = {label: family for family, members in FAMILIES.items() for label in members}

# Foreign label → one of the 28. Labels already in the 28 (the six dair-ai/emotion labels sadness, joy, love,
# anger, fear, surprise; Ekman's disgust; neutral) map to themselves and are not listed. Keys are compared
# lower-cased with spaces/hyphens as underscores. Anything not here and not in the 28 becomes neutral.
FOREIGN_LABELS: dict[str, str] = {
    # adjectives and synonyms (emotion-english-*, ISEAR, CARER variants)
    "happy": "joy", "happiness": "joy", "joyful": "joy", "fun": "amusement", "enthusiasm": "excitement",
    "sad": "sadness", "angry": "anger", "hate": "anger", "rage": "anger", "frustration": "annoyance",
    "irritation": "annoyance", "fearful": "fear", "scared": "fear", "afraid": "fear", "terror": "fear",
    "anxiety": "nervousness", "worry": "nervousness", "nervous": "nervousness", "surprised": "surprise",
    "disgusted": "disgust", "contempt": "disapproval", "shame": "embarrassment", "guilt": "remorse",
    "thankful": "gratitude", "thankfulness": "gratitude", "hope": "optimism", "calm": "relief",
    # Plutchik's wheel
    "trust": "approval", "anticipation": "excitement",
    # sentiment models
    "positive": "joy", "negative": "sadness",
    # "no emotion" spellings
    "none": "neutral", "other": "neutral", "others": "neutral", "no_emotion": "neutral", "empty": "neutral",
    "boredom": "neutral",
}

_GENERIC_LABEL = re.compile(r"^label_\d+$")


def normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def map_label(name: str) -> str:
    """One of the 28 labels for a classifier's label `name` (unknown → neutral)."""
    key = normalise(name)
    if key in FAMILY_OF:
        return key
    return FOREIGN_LABELS.get(key, NEUTRAL)


def is_known_label(name: str) -> bool:
    """True when `name` is one of the 28 or in the mapping table (so it is not neutral by default)."""
    key = normalise(name)
    return key in FAMILY_OF or key in FOREIGN_LABELS


def is_generic_label(name: str) -> bool:
    """True for the placeholder names (LABEL_0, LABEL_1…) of a classification head nobody trained or named."""
    return bool(_GENERIC_LABEL.match(normalise(name)))


def ranked(scores: dict[str, float]) -> list[dict]:
    """[{"label", "score"}] over all 28 labels, highest first; ties keep the order of LABELS.

    The scores are normalised to sum to 1, so every engine answers with a probability distribution even when
    its model scores labels independently (multi-label sigmoid heads).
    """
    full = {label: max(0.0, float(scores.get(label, 0.0))) for label in LABELS}
    total = sum(full.values())
    if total <= 0.0:
        full, total = {**dict.fromkeys(LABELS, 0.0), NEUTRAL: 1.0}, 1.0
    order = sorted(LABELS, key=lambda label: -full[label])  # sorted() is stable: ties stay in LABELS order
    return [{"label": label, "score": full[label] / total} for label in order]


def neutral_only() -> list[dict]:
    """The answer for text with nothing to classify (empty, whitespace)."""
    return ranked({NEUTRAL: 1.0})
