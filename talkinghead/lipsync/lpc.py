"""Linear prediction: LPC coefficients per frame (Levinson-Durbin, batched), the formants F1 and F2 from them
(envelope peaks, or polynomial roots where the peaks may mislead), and the pitch from the residual.

Threads: pure functions of their arguments; the tables here are made at import and only read, so any thread may
call them at once.
"""
from __future__ import annotations

import numpy as np

from talkinghead.lipsync.spectra import ANALYSIS_RATE, NFFT, WINDOW, abs2

_F0_RANGE = (70.0, 500.0)


def pitch(residual_autocorr: np.ndarray) -> np.ndarray:
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


def levinson(r: np.ndarray) -> np.ndarray:
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


def formants(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
