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

The parts: spectra.py (framing, spectra), mouth.py (openness, closures, voicing), vowels.py (formants and the
vowel); here the track, decoding and the steps in order.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from talkinghead.lipsync.mouth import attack_release, closures, loudness_and_voicing
from talkinghead.lipsync.spectra import ANALYSIS_RATE, FRAME_MS, frames, power_spectra, resample
from talkinghead.lipsync.vowels import VOWELS, carry_over_unvoiced, vowel_weights

MAX_DURATION_S = 600.0

__all__ = ["ANALYSIS_RATE", "FRAME_MS", "MAX_DURATION_S", "VOWELS", "AudioError", "Track", "analyse",
           "analyse_samples", "decode"]


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
        x = resample(x, rate, ANALYSIS_RATE)
    n = int(duration * 1000 // FRAME_MS) + 1  # frame i is centred on t = i * FRAME_MS

    power = power_spectra(frames(x, n))
    raw_open, voiced = loudness_and_voicing(power)

    # The vowel only where it is heard: consonants and pauses take the nearest vowel's shape.
    weights = np.zeros((n, len(VOWELS)))
    weights[voiced] = vowel_weights(power[voiced], raw_open[voiced])
    weights = carry_over_unvoiced(weights, voiced & (weights.sum(axis=1) > 0))

    # The lips shut at closures after the smoothing, so that it cannot round a 50-80 ms /p b m/ away.
    openness = attack_release(raw_open) * (1.0 - closures(power))
    weights[openness < 0.01] = 0.0  # a closed mouth has no vowel
    return Track(openness.astype(np.float32), weights.astype(np.float32), duration,
                 float(voiced.mean()))
