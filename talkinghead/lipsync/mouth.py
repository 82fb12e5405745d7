"""How far the mouth is open, per 10 ms frame: loudness relative to the clip's loud level, smoothed, and shut at
the closures of /p b m/; and which frames are voiced speech (the vowel is read there: vowels.py)."""
from __future__ import annotations

import numpy as np

from talkinghead.lipsync.spectra import ANALYSIS_RATE, COSINES, FRAME_MS, NFFT, WINDOW_POWER

# Openness.
_LOUD_PERCENTILE = 95
_SILENCE_DBFS = -85.0  # below this a frame is silence whatever the clip (16-bit dither, codec noise)
_DB_RANGE = 36.0  # the mouth opens over this many dB below the clip's loud level
_ATTACK_S = 0.008  # one-pole time constants: ~20 ms to open, ~35 ms to close in speech (closures: at once)
_RELEASE_S = 0.015  # was 25 ms: closures now shut the lips, and the slower release lagged the loudness
_RELEASE_SILENT_S = 0.010  # into silence the mouth closes faster

# Voicing: a frame is voiced when it sounds and its energy is mostly low-frequency (not a fricative).
_VOICED_MIN_OPEN = 0.15
_VOICED_MIN_R1 = 0.4  # first normalised autocorrelation coefficient


def loudness_and_voicing(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Openness before smoothing, and which frames are voiced speech, from the frames' power spectra."""
    # Only a few autocorrelation lags are needed: a product with a cosine table beats a full inverse FFT.
    autocorr = power @ COSINES[:, :2]
    rms_db = 10 * np.log10(np.maximum(autocorr[:, 0] / WINDOW_POWER, 1e-12))
    raw_open = _openness(rms_db)
    r1 = autocorr[:, 1] / np.maximum(autocorr[:, 0], 1e-12)
    return raw_open, (raw_open > _VOICED_MIN_OPEN) & (r1 > _VOICED_MIN_R1)


def _openness(rms_db: np.ndarray) -> np.ndarray:
    """0..1 per frame from loudness relative to the clip's loud level (before smoothing)."""
    # The loud level is taken over the frames near the loudest, so it does not depend on the clip's volume
    # (how many quiet frames sit above the absolute floor would).
    sounding = rms_db > max(_SILENCE_DBFS, rms_db.max() - _DB_RANGE - 10)
    if rms_db.max() <= _SILENCE_DBFS:
        return np.zeros_like(rms_db)
    loud = np.percentile(rms_db[sounding], _LOUD_PERCENTILE)
    # The square root of the amplitude relative to the loud level, from 0 at _DB_RANGE below it to 1 at it:
    # follows the loudness (syllables show) without flapping wide open on every consonant.
    root = np.sqrt(10 ** ((rms_db - loud) / 20))
    root_floor = np.sqrt(10 ** (-_DB_RANGE / 20))
    opened = np.clip((root - root_floor) / (1 - root_floor), 0.0, 1.0)
    return np.where(rms_db > _SILENCE_DBFS, opened, 0.0)


def attack_release(raw: np.ndarray) -> np.ndarray:
    """One-pole smoothing, faster up than down, fastest into silence. A scalar loop over ~100 frames/s."""
    step = FRAME_MS / 1000
    attack = 1 - np.exp(-step / _ATTACK_S)
    release = 1 - np.exp(-step / _RELEASE_S)
    release_silent = 1 - np.exp(-step / _RELEASE_SILENT_S)
    out = np.empty_like(raw)
    y = 0.0
    for i, target in enumerate(raw.tolist()):
        if target > y:
            y += attack * (target - y)
        else:
            y += (release if target > 0 else release_silent) * (target - y)
        out[i] = y
    return out


def closures(power: np.ndarray) -> np.ndarray:
    """How shut the lips are per frame, 0..1: 1 in a dip of the level above _CLOSURE_CUT_HZ at least
    _CLOSURE_FULL_DB below the louder sound on *both* sides within _CLOSURE_REACH_MS (a consonant between two
    vowels), 0 above _CLOSURE_START_DB.

    Above 400 Hz, because a closure is heard there: /p/ is silence, /b/ a voice bar and /m/ a nasal murmur,
    all three with their energy below ~400 Hz (the broadband level dips only 1-6 dB at /m/). Measured on
    Festival's voices (within ±60 ms): 12 dB (median) at /m/, 30 at /b/, 47 at /p/, under 7 dB in 90 % of
    vowel segments. Other consonants between vowels (t, k, n, l) dip too and close the mouth as well, as a jaw does.
    """
    level = 10 * np.log10(np.maximum(power[:, _CLOSURE_BINS].sum(axis=1), 1e-12))
    k = _CLOSURE_REACH_MS // FRAME_MS
    padded = np.pad(level, k, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1)
    depth = np.minimum(windows[:, :k + 1].max(axis=1), windows[:, k:].max(axis=1)) - level
    return np.clip((depth - _CLOSURE_START_DB) / (_CLOSURE_FULL_DB - _CLOSURE_START_DB), 0.0, 1.0)


_CLOSURE_CUT_HZ = 400.0
_CLOSURE_BINS = np.fft.rfftfreq(NFFT, 1 / ANALYSIS_RATE) >= _CLOSURE_CUT_HZ
_CLOSURE_REACH_MS = 80  # a louder sound on each side within this: a closure up to 80 ms shuts all along (60 ms
# shut only the middle of an 80 ms /m/; 100-120 ms began to lower the vowels of espeak-ng sentences)
_CLOSURE_START_DB = 6.0
_CLOSURE_FULL_DB = 12.0
