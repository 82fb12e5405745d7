"""Lip-sync analysis: from TTS audio bytes to a mouth track, one value every 10 ms.

The engine plays the track alongside the audio: how far the mouth is open, and which vowel shape it makes
(weights over the five THA3 mouth morphs, in the order of talkinghead.settings.VOWEL_MORPHS).

Method (numpy only, vectorised over all frames; ~30 ms for 10 s of speech):

1. Decode. PyAV (FFmpeg) detects the container from the bytes, never from a declared content type, decodes
   and resamples to mono float at ANALYSIS_RATE (12 kHz: speech formants lie below 6 kHz).
2. Frame. 25 ms Hann windows centred every 10 ms (stride tricks, no copies), one real FFT per frame. The
   power spectrum gives the frame's loudness, its autocorrelation (for voicing, pitch and LPC) and, through
   a pre-emphasis filter applied in the frequency domain, the autocorrelation LPC needs.
3. Openness. Frame RMS in dB relative to the clip's loud level (its 95th percentile over sounding frames),
   so quiet and loud TTS open the mouth the same; DB_RANGE dB below that level the mouth is closed. A square
   root-like curve (amplitude ** 0.5 in between) keeps syllables visible without flapping on consonants.
   Attack/release smoothing (one-pole, faster into silence) stops jitter and closes the mouth promptly.
   Then the lips shut at closures: where the level above 400 Hz dips 6-12 dB or more below the sounds on
   both sides (/p/ silence, /b/ voice bar, /m/ nasal murmur: all below 400 Hz), openness goes to 0, after
   the smoothing, so that a 50-80 ms closure is not rounded away.
4. Vowel. LPC (autocorrelation + Levinson-Durbin, batched over frames) gives the formants F1 and F2: the
   peaks of its envelope, or the roots of its polynomial (eigenvalues of the batched companion matrices)
   where a second peak may be F3 (a man's /u/: F1 and F2 merged into one peak). When the clip holds enough
   varied vowels (a sentence), they are placed per clip: Lobanov z-scores of Bark F1 and F2 over the clip's
   vowel nuclei, so a speaker's vocal tract, language and accent drop out, and compared with prototypes
   fitted on Festival's Czech voices (recorded speakers; the English and Finnish ones are held out: 87 % of
   their vowel segments read right, `bench/bench_lipsync_analysis.py`). A clip too short or too uniform
   (one sustained vowel, "Yes.") is read by a speaker-independent rule instead: Bark differences after
   Syrdal & Gopal (1986), height from Z(F1) - 0.5 Z(F0) (F0 from the autocorrelation of the LPC residual)
   and front/back from Z(F2) - Z(F1), against prototypes placed from published formant averages and
   espeak-ng's voices. Soft weights: a softmax over distances to the prototypes. Consonants and pauses keep
   the nearest vowel's shape; a ~40 ms average smooths it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

FRAME_MS = 10
MAX_DURATION_S = 600.0
VOWELS = ("aaa", "iii", "uuu", "eee", "ooo")  # the order of talkinghead.settings.VOWEL_MORPHS

ANALYSIS_RATE = 12000
_HOP = ANALYSIS_RATE * FRAME_MS // 1000  # 120 samples
_WIN = ANALYSIS_RATE * 25 // 1000  # 300 samples: 2-3 pitch periods of a low male voice
_NFFT = 512
_LPC_ORDER = 12  # 6 resonances up to 6 kHz
_PRE_EMPHASIS = 0.97

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

_F0_RANGE = (70.0, 500.0)


class AudioError(ValueError):
    """The bytes are not audio we can use; str(e) is a user-facing message (no internal detail)."""


@dataclass(frozen=True)
class Track:
    open: np.ndarray  # (n,) float32 in [0, 1]: mouth openness per frame (0 = closed)
    vowels: np.ndarray  # (n, 5) float32: weights over VOWELS per frame, rows sum to 1 (all 0 where silent)
    duration_s: float
    voiced_ratio: float  # fraction of frames judged voiced speech
    frame_ms: int = FRAME_MS

    def to_json(self, with_track: bool) -> dict:
        out = {"duration_s": round(float(self.duration_s), 3), "frame_ms": self.frame_ms,
               "voiced_ratio": round(float(self.voiced_ratio), 3)}
        if with_track:
            track = {"open": np.round(self.open.astype(float), 3).tolist()}
            for i, name in enumerate(VOWELS):
                track[name] = np.round(self.vowels[:, i].astype(float), 3).tolist()
            out["track"] = track
        return out

    def at(self, t: float) -> tuple[float, np.ndarray]:
        """Openness and vowel weights at t seconds from the start, linear between frames."""
        n = len(self.open)
        if n == 0 or not 0.0 <= t <= self.duration_s:
            return 0.0, np.zeros(len(VOWELS), np.float32)
        x = min(t * 1000.0 / self.frame_ms, n - 1)
        i = int(x)
        j = min(i + 1, n - 1)
        w = x - i
        openness = (1 - w) * self.open[i] + w * self.open[j]
        vowels = (1 - w) * self.vowels[i] + w * self.vowels[j]
        return float(openness), vowels.astype(np.float32)


# --- Decoding ---------------------------------------------------------------------------------------------

def decode(data: bytes, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their sample rate (the file's own, or `rate` when given: resampled by FFmpeg).

    The format is detected from the bytes. Raises AudioError for empty input, anything that is not audio or
    does not decode, and audio longer than MAX_DURATION_S.
    """
    import av  # imported here: only lip-sync needs FFmpeg

    if not data:
        raise AudioError("The audio is empty.")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError):
        raise AudioError("This is not audio in a format we can read (WAV, MP3, OGG, FLAC, M4A, WebM).") from None
    with container:
        if not container.streams.audio:
            raise AudioError("This file has no audio in it.")
        stream = container.streams.audio[0]
        # A declared duration over the cap is refused before decoding anything.
        if container.duration is not None and container.duration / 1e6 > MAX_DURATION_S + 1.0:
            raise _too_long()
        out_rate = rate or stream.codec_context.sample_rate or stream.rate
        if not out_rate:
            raise AudioError("This audio has no sample rate.")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate)
        limit = int((MAX_DURATION_S + 0.05) * out_rate)  # headers can lie: count what is really decoded
        chunks, total = [], 0
        try:
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    chunks.append(piece.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total > limit:
                    raise _too_long()
            for piece in resampler.resample(None):  # flush
                chunks.append(piece.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as e:
            if not chunks:  # a damaged tail is tolerated, audio that never decodes is not
                raise AudioError("The audio could not be decoded (damaged or unsupported).") from e
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioError("The audio has no samples.")
    if samples.size > limit:
        raise _too_long()
    return samples, int(out_rate)


def _too_long() -> AudioError:
    return AudioError(f"The audio is longer than {MAX_DURATION_S:g} s.")


# --- Analysis ---------------------------------------------------------------------------------------------

def analyse(data: bytes) -> Track:
    """Decode the audio bytes (any supported format) and analyse them."""
    samples, rate = decode(data, ANALYSIS_RATE)
    return analyse_samples(samples, rate)


def analyse_samples(samples: np.ndarray, rate: int) -> Track:
    """The mouth track of mono samples (float, full scale 1.0) at `rate` Hz."""
    if rate <= 0:
        raise ValueError(f"bad sample rate {rate}")
    x = np.asarray(samples, np.float32).reshape(-1)
    duration = x.size / rate
    if x.size == 0:
        return Track(np.zeros(0, np.float32), np.zeros((0, len(VOWELS)), np.float32), 0.0, 0.0)
    if rate != ANALYSIS_RATE:
        x = _resample(x, rate, ANALYSIS_RATE)
    n = int(duration * 1000 // FRAME_MS) + 1  # frame i is centred on t = i * FRAME_MS

    power = _power_spectra(_frames(x, n))
    raw_open, voiced = _loudness_and_voicing(power)

    # The vowel only where it is heard: consonants and pauses take the nearest vowel's shape.
    weights = np.zeros((n, len(VOWELS)))
    weights[voiced] = _vowel_weights(power[voiced], raw_open[voiced])
    weights = _carry_over_unvoiced(weights, voiced & (weights.sum(axis=1) > 0))

    # The lips shut at closures after the smoothing, so that it cannot round a 50-80 ms /p b m/ away.
    openness = _attack_release(raw_open) * (1.0 - _closures(power))
    weights[openness < 0.01] = 0.0  # a closed mouth has no vowel
    return Track(openness.astype(np.float32), weights.astype(np.float32), duration,
                 float(voiced.mean()))


def _loudness_and_voicing(power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Openness before smoothing, and which frames are voiced speech, from the frames' power spectra."""
    # Only a few autocorrelation lags are needed: a product with a cosine table beats a full inverse FFT.
    autocorr = power @ _COSINES[:, :2]
    rms_db = 10 * np.log10(np.maximum(autocorr[:, 0] / _WINDOW_POWER, 1e-12))
    raw_open = _openness(rms_db)
    r1 = autocorr[:, 1] / np.maximum(autocorr[:, 0], 1e-12)
    return raw_open, (raw_open > _VOICED_MIN_OPEN) & (r1 > _VOICED_MIN_R1)


def _resample(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT (the whole clip at once; fast enough for minutes of audio)."""
    m = int(round(x.size * new_rate / rate))
    spectrum = np.fft.rfft(x)
    keep = min(spectrum.size, m // 2 + 1)
    return (np.fft.irfft(spectrum[:keep], m) * (m / x.size)).astype(np.float32)


_WINDOW = np.hanning(_WIN + 2)[1:-1].astype(np.float32)
_WINDOW_POWER = float(np.sum(_WINDOW ** 2))  # a full-scale sine's window sum is half of this
_PRE_EMPHASIS_GAIN = np.abs(1 - _PRE_EMPHASIS * np.exp(-2j * np.pi * np.fft.rfftfreq(_NFFT))) ** 2


def _frames(x: np.ndarray, n: int) -> np.ndarray:
    """(n, _WIN) windows centred on t = i * 10 ms (a view into the zero-padded signal)."""
    half = _WIN // 2
    padded = np.zeros(n * _HOP + _WIN, np.float32)
    padded[half:half + x.size] = x[:n * _HOP + _WIN - half]
    return np.lib.stride_tricks.sliding_window_view(padded, _WIN)[::_HOP][:n]


def _power_spectra(frames: np.ndarray) -> np.ndarray:
    # float64: numpy's float32 FFT is several times slower here.
    return _abs2(np.fft.rfft(frames * _WINDOW.astype(np.float64), _NFFT, axis=1))


def _abs2(z: np.ndarray) -> np.ndarray:
    return z.real ** 2 + z.imag ** 2


# Autocorrelation at lag k of a frame = sum over the rfft bins of weight * power * cos(2 pi k bin / NFFT)
# (the irfft written out, with the edge bins counted once).
_COSINES = np.cos(2 * np.pi * np.outer(np.arange(_NFFT // 2 + 1), np.arange(_LPC_ORDER + 1)) / _NFFT)
_COSINES *= np.where((np.arange(_NFFT // 2 + 1) == 0) | (np.arange(_NFFT // 2 + 1) == _NFFT // 2), 1, 2)[:, None]
_COSINES /= _NFFT


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


def _attack_release(raw: np.ndarray) -> np.ndarray:
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


def _closures(power: np.ndarray) -> np.ndarray:
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
_CLOSURE_BINS = np.fft.rfftfreq(_NFFT, 1 / ANALYSIS_RATE) >= _CLOSURE_CUT_HZ
_CLOSURE_REACH_MS = 80  # a louder sound on each side within this: a closure up to 80 ms shuts all along (60 ms
# shut only the middle of an 80 ms /m/; 100-120 ms began to lower the vowels of espeak-ng sentences)
_CLOSURE_START_DB = 6.0
_CLOSURE_FULL_DB = 12.0


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


_WINDOW_AUTOCORR = np.fft.irfft(np.abs(np.fft.rfft(_WINDOW, _NFFT)) ** 2, _NFFT)
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
    lo, hi = (int(f * _NFFT / ANALYSIS_RATE) for f in _FORMANT_RANGE)
    e = -np.log(_abs2(np.fft.rfft(scaled, _NFFT, axis=1)[:, lo - 1:hi + 2]) + 1e-12)
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
        found.append(np.where(ok, (lo + k + offset) * ANALYSIS_RATE / _NFFT, np.nan))
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


def _vowel_weights(power: np.ndarray, openness: np.ndarray) -> np.ndarray:
    """Weights over VOWELS per frame from its power spectrum (the clip's voiced frames, in order, and their
    openness): a softmax over the distances to the vowel prototypes; rows of zeros where a formant is not
    found. Placed per clip (Lobanov) when the clip has enough varied vowels, else by the pitch rule."""
    emphasised = power * _PRE_EMPHASIS_GAIN
    lpc = _levinson(emphasised @ _COSINES)
    f1, f2 = _formants(lpc)
    placed = _speaker_placed(f1, f2, openness)
    if placed is not None:
        return _softmax_nearest(placed, _CLIP_PROTOTYPES, _CLIP_SOFTNESS)
    residual = emphasised * _abs2(np.fft.rfft(lpc, _NFFT, axis=1))  # the inverse filter's output
    f0 = _pitch(np.fft.irfft(residual, _NFFT, axis=1))
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


def _carry_over_unvoiced(weights: np.ndarray, voiced: np.ndarray) -> np.ndarray:
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
