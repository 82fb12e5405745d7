"""Which vowel the mouth shapes, per voiced frame: formants from LPC, placed per clip (Lobanov) or by a
speaker-independent rule, and a softmax over the five vowel prototypes (the method: talkinghead.lipsync)."""
from __future__ import annotations

import numpy as np

from talkinghead.lipsync.spectra import ANALYSIS_RATE, COSINES, NFFT, PRE_EMPHASIS_GAIN, WINDOW, abs2

VOWELS = ("aaa", "iii", "uuu", "eee", "ooo")  # the order of talkinghead.settings.VOWEL_MORPHS
_F0_RANGE = (70.0, 500.0)


def _pitch(residual_autocorr: np.ndarray) -> np.ndarray:
    """F0 per frame from the autocorrelation of the LPC residual (formants removed, so their ripples do not
    pass for pitch): the shortest lag in the voice range whose peak is near the best one (lags of 2 and 3
    periods correlate as well as one; taking the first near-best peak avoids reading a voice an octave low).
    """
    lo = int(ANALYSIS_RATE / _F0_RANGE[1])
    hi = int(ANALYSIS_RATE / _F0_RANGE[0])
    ac = residual_autocorr[:, lo:hi + 1] / _WINDOW_AUTOCORR[lo:hi + 1]  # undo the window's taper
    is_peak = np.zeros(ac.shape, bool)
    is_peak[:, 1:-1] = (ac[:, 1:-1] >= ac[:, :-2]) & (ac[:, 1:-1] > ac[:, 2:])
    best = np.max(np.where(is_peak, ac, -np.inf), axis=1, keepdims=True)
    near_best = is_peak & (ac >= 0.8 * best)
    lag = lo + np.argmax(near_best, axis=1)  # the first True
    f0 = ANALYSIS_RATE / lag.astype(float)
    return np.where(near_best.any(axis=1) & (best[:, 0] > 0), f0, np.nan)


_WINDOW_AUTOCORR = np.fft.irfft(np.abs(np.fft.rfft(WINDOW, NFFT)) ** 2, NFFT)
_WINDOW_AUTOCORR = np.maximum(_WINDOW_AUTOCORR / _WINDOW_AUTOCORR[0], 0.05)


def _levinson(r: np.ndarray) -> np.ndarray:
    """LPC coefficients a (n, p + 1), a[:, 0] = 1, from autocorrelations r (n, p + 1), all frames at once."""
    r = r.astype(np.float64)
    n, p1 = r.shape
    a = np.zeros((n, p1))
    a[:, 0] = 1.0
    err = r[:, 0] * (1 + 1e-9)  # a little white noise keeps the recursion stable (frames are never silent)
    for k in range(1, p1):
        acc = np.einsum("ij,ij->i", a[:, :k], r[:, k:0:-1])
        refl = -acc / err
        a[:, 1:k + 1] = a[:, 1:k + 1] + refl[:, None] * a[:, k - 1::-1][:, :k]
        err = err * (1 - refl ** 2)
    return a


def _formants(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 and F2 in Hz per frame from the LPC coefficients; nan where not found.

    The peaks of the LPC envelope where they are sure, the roots of the LPC polynomial where they may not be:
    no second peak, or one above _SURE_F2_HZ. That one may be F3: the F1 and F2 of a man's /u/ and /o/
    (F1 300-450, F2 600-900 Hz, F2 weak) merge into one peak, and F3 near 2.1 kHz passed for F2, so /u/ read
    as /i/ (the Czech male voice: 63 % of vowel segments could be told apart even with his own centroids;
    with roots 90 %). The roots are most of the analysis' time, so only those frames (about half) pay.
    """
    f1, f2 = _envelope_peaks(a)
    unsure = ~np.isfinite(f1) | ~np.isfinite(f2) | (f2 > _SURE_F2_HZ)
    if unsure.any():
        f1[unsure], f2[unsure] = _root_formants(a[unsure])
    return f1, f2


def _envelope_peaks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two lowest peaks of the LPC envelope 1 / |A|, evaluated on a circle of radius _CONTOUR just inside
    the unit circle (scaling a_k by _CONTOUR^-k) so that close formants stay two peaks where they can.
    One small FFT for all frames: far cheaper than the polynomial roots (eigenvalues of 12x12 matrices).
    """
    scaled = a * _CONTOUR ** -np.arange(a.shape[1])
    lo, hi = (int(f * NFFT / ANALYSIS_RATE) for f in _FORMANT_RANGE)
    e = -np.log(abs2(np.fft.rfft(scaled, NFFT, axis=1)[:, lo - 1:hi + 2]) + 1e-12)
    left, mid, right = e[:, :-2], e[:, 1:-1], e[:, 2:]
    is_peak = (mid > left) & (mid >= right)
    rows = np.arange(len(e))
    found = []
    for _ in range(2):  # the first peak, then the next one
        k = np.argmax(is_peak, axis=1)
        ok = is_peak[rows, k]
        is_peak[rows, k] = False
        # Parabolic interpolation between bins.
        l, m, r = left[rows, k], mid[rows, k], right[rows, k]
        denom = l - 2 * m + r
        offset = np.where(denom < 0, 0.5 * (l - r) / np.where(denom < 0, denom, -1.0), 0.0)
        found.append(np.where(ok, (lo + k + offset) * ANALYSIS_RATE / NFFT, np.nan))
    return found[0], found[1]


def _root_formants(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two lowest resonances in _FORMANT_RANGE narrower than _MAX_BANDWIDTH: roots of the LPC polynomial
    (eigenvalues of the batched companion matrices). They keep two close formants apart where the envelope
    shows one peak, and find a weak, broad F2 that shows no peak at all."""
    p = a.shape[1] - 1
    companion = np.zeros((len(a), p, p), np.float32)  # single precision: the same formants, eigvals ~25 % faster
    companion[:, 0, :] = -a[:, 1:]
    companion[:, np.arange(1, p), np.arange(p - 1)] = 1.0
    finite = np.isfinite(companion).all(axis=(1, 2))
    companion[~finite] = 0.0
    roots = np.linalg.eigvals(companion)
    freq = np.angle(roots) * ANALYSIS_RATE / (2 * np.pi)
    bandwidth = -np.log(np.maximum(np.abs(roots), 1e-12)) * ANALYSIS_RATE / np.pi
    resonant = (freq > _FORMANT_RANGE[0]) & (freq < _FORMANT_RANGE[1]) & (bandwidth < _MAX_BANDWIDTH)
    freq = np.sort(np.where(resonant, freq, np.inf), axis=1)  # conjugates have negative angles: left out
    f1, f2 = freq[:, 0], freq[:, 1]
    return (np.where(np.isfinite(f1) & finite, f1, np.nan), np.where(np.isfinite(f2) & finite, f2, np.nan))


_CONTOUR = 0.97
_FORMANT_RANGE = (150.0, 3800.0)  # F1 and F2 of men, women and children (a child's /i/ has F2 near 3200 Hz)
_MAX_BANDWIDTH = 1000.0  # Hz: wider poles shape the spectral tilt, they are not formants
# A second envelope peak above this may be F3 (a man's F3 lies near 2-2.5 kHz). Below it the peaks are the
# formants: on Festival's voices the vowel reading was the same as with roots everywhere (with 1300 or 2000).
_SURE_F2_HZ = 1600.0


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
    lpc = _levinson(emphasised @ COSINES)
    f1, f2 = _formants(lpc)
    placed = _speaker_placed(f1, f2, openness)
    if placed is not None:
        return _softmax_nearest(placed, _CLIP_PROTOTYPES, _CLIP_SOFTNESS)
    residual = emphasised * abs2(np.fft.rfft(lpc, NFFT, axis=1))  # the inverse filter's output
    f0 = _pitch(np.fft.irfft(residual, NFFT, axis=1))
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


def _speaker_placed(f1: np.ndarray, f2: np.ndarray, openness: np.ndarray) -> np.ndarray | None:
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
