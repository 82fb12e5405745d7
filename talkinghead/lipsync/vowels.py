"""Vowels: the five mouth shapes' weights per voiced frame from F1, F2 (and F0): placed per clip (Lobanov
z-scores) when the clip holds enough varied vowels, else by a speaker-independent Bark rule; then unvoiced
frames take the nearest vowel's shape.

Threads: pure functions of their arguments; the tables here are made at import and only read, so any thread may
call them at once.
"""
from __future__ import annotations

import numpy as np

from talkinghead.lipsync.lpc import formants, levinson, pitch
from talkinghead.lipsync.spectra import COSINES, NFFT, PRE_EMPHASIS_GAIN, abs2

VOWELS = ("aaa", "iii", "uuu", "eee", "ooo")  # the order of talkinghead.settings.VOWEL_MORPHS


def _bark(f: np.ndarray) -> np.ndarray:
    """Traunmüller (1990)."""
    return 26.81 * f / (1960 + f) - 0.53


# Speaker normalisation. Height is Z(F1) - 0.5 Z(F0): Syrdal & Gopal's Z(F1) - Z(F0) over-corrects (on
# Peterson & Barney's averages, men's, women's and children's /e/ and /o/ cluster tighter with half the
# pitch term, and so do espeak-ng's voices). Front/back is Z(F2) - Z(F1), weighted a little less because it
# spans a wider range (2-12 Bark).
_PITCH_TERM = 0.5
_FEATURE_SCALE = np.array([1.0, 0.75])

# Vowel prototypes in that plane. Each is the mean of two sources, so that neither natural nor synthetic
# speech sits at the edge of its cluster:
# - natural speech, from F0, F1, F2 averages (Hz) of men, women and children: Peterson & Barney (1952) for
#   /a/ (their ɑ), /i/ and /u/, Hillenbrand et al. (1995) for close-mid /e/ and /o/;
# - espeak-ng's male, female and child-like voices (en, de, es, fr, it, pt; medians of sustained vowels
#   measured with this analyser), whose /u/ and /o/ are a little lower (higher F1) than natural ones.
_NATURAL_HZ = {
    "aaa": [(124, 730, 1090), (212, 850, 1220), (256, 1030, 1370)],
    "iii": [(136, 270, 2290), (235, 310, 2790), (272, 370, 3200)],
    "uuu": [(141, 300, 870), (231, 370, 950), (276, 430, 1170)],
    "eee": [(125, 476, 2089), (215, 536, 2530), (250, 564, 2656)],
    "ooo": [(129, 500, 910), (217, 555, 1035), (260, 597, 1137)],
}
_SYNTHETIC_BARK = {"aaa": (7.49, 2.72), "iii": (2.56, 11.02), "uuu": (3.10, 4.05), "eee": (4.03, 8.68),
                   "ooo": (4.50, 2.52)}
_SOFTNESS = 0.7  # Bark: scaled distances are divided by this before the softmax


def _features(f0: np.ndarray, f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    z1 = _bark(f1)
    return np.stack([z1 - _PITCH_TERM * _bark(f0), _bark(f2) - z1], axis=-1) * _FEATURE_SCALE


def _prototypes() -> np.ndarray:
    protos = []
    for name in VOWELS:
        f0, f1, f2 = np.array(_NATURAL_HZ[name], float).T
        natural = _features(f0, f1, f2).mean(axis=0)
        protos.append((natural + np.array(_SYNTHETIC_BARK[name]) * _FEATURE_SCALE) / 2)
    return np.array(protos)


_PROTOTYPES = _prototypes()  # (5, 2)


def vowel_weights(power: np.ndarray, openness: np.ndarray) -> np.ndarray:
    """Weights over VOWELS per frame from its power spectrum (the clip's voiced frames, in order, and their
    openness): a softmax over the distances to the vowel prototypes; rows of zeros where a formant is not
    found. Placed per clip (Lobanov) when the clip has enough varied vowels, else by the pitch rule."""
    emphasised = power * PRE_EMPHASIS_GAIN
    lpc = levinson(emphasised @ COSINES)
    f1, f2 = formants(lpc)
    placed = speaker_placed(f1, f2, openness)
    if placed is not None:
        return _softmax_nearest(placed, _CLIP_PROTOTYPES, _CLIP_SOFTNESS)
    residual = emphasised * abs2(np.fft.rfft(lpc, NFFT, axis=1))  # the inverse filter's output
    f0 = pitch(np.fft.irfft(residual, NFFT, axis=1))
    return _softmax_nearest(_features(f0, f1, f2), _PROTOTYPES, _SOFTNESS)


def _softmax_nearest(features: np.ndarray, prototypes: np.ndarray, softness: float) -> np.ndarray:
    d2 = np.sum((features[:, None, :] - prototypes[None]) ** 2, axis=2) / softness ** 2
    known = np.isfinite(d2).all(axis=1)
    w = np.zeros_like(d2)
    d = d2[known]
    w[known] = np.exp(-(d - d.min(axis=1, keepdims=True)))
    return w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)


# Per-clip speaker normalisation (Lobanov 1971): Bark F1 and F2 as z-scores over the clip's vowel nuclei
# (voiced frames at least _NUCLEUS_OPEN open). A sentence holds enough vowels to place the speaker, whatever
# their vocal tract, language or accent: the pitch rule above read only 56 % of vowel segments of Festival's
# recorded-speaker voices right (their /a/ is central, nearer the rule's /o/; the Czech man's is at F1
# 580 Hz). A clip too short or too uniform to place the speaker (a sustained vowel, "Yes.") keeps that rule.
_NUCLEUS_OPEN = 0.4
_MIN_NUCLEI = 40  # frames: 0.4 s of vowels
# Std of Bark F1, F2 over the nuclei: Festival's sentences >= 0.79, 1.34; espeak-ng's sustained vowels <= 0.49, 0.87.
_MIN_SPREAD_BARK = (0.6, 1.1)
# Prototypes in that z-space: per vowel, the mean over the fitting voices of the median z of its segments
# (middle half), fitted on Festival's three Czech voices (czech_dita, czech_machac, czech_krb; 4 sentences
# each: tests/synth.py) with `bench/bench_lipsync_analysis.py --fit`. The English and Finnish voices are
# held out and measured. Order: VOWELS.
_CLIP_PROTOTYPES = np.array([[1.25, -0.08], [-0.61, 1.28], [-0.63, -1.53], [0.49, 0.87], [0.24, -0.54]])
_CLIP_SOFTNESS = 0.4  # z units


def _clip_features(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    return np.stack([_bark(f1), _bark(f2)], axis=-1)


def speaker_placed(f1: np.ndarray, f2: np.ndarray, openness: np.ndarray) -> np.ndarray | None:
    """The frames' (F1, F2) as z-scores over the clip's vowel nuclei, or None when they cannot place the
    speaker."""
    features = _clip_features(f1, f2)
    nuclei = features[np.isfinite(features).all(axis=1) & (openness > _NUCLEUS_OPEN)]
    if len(nuclei) < _MIN_NUCLEI:
        return None
    spread = nuclei.std(axis=0)
    if np.any(spread < _MIN_SPREAD_BARK):
        return None
    return (features - nuclei.mean(axis=0)) / spread


def carry_over_unvoiced(weights: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Unvoiced frames (consonants, pauses) keep the nearest voiced frame's shape; then a short smoothing."""
    n = len(weights)
    if not voiced.any():
        return np.zeros_like(weights)
    idx = np.flatnonzero(voiced)
    nearest = idx[np.clip(np.searchsorted(idx, np.arange(n)), 0, idx.size - 1)]
    before = idx[np.clip(np.searchsorted(idx, np.arange(n)) - 1, 0, idx.size - 1)]
    pick = np.where(np.abs(before - np.arange(n)) < np.abs(nearest - np.arange(n)), before, nearest)
    w = weights[pick]
    # ~40 ms moving average over the frames (a vowel takes tens of ms to form); keeps rows summing to 1.
    kernel = np.array([1, 2, 3, 2, 1], float)
    kernel /= kernel.sum()
    padded = np.pad(w, ((2, 2), (0, 0)), mode="edge")
    return sum(kernel[k] * padded[k:k + n] for k in range(5))
