"""Framing and spectra for the lip-sync analysis: 25 ms Hann windows centred every 10 ms at ANALYSIS_RATE, one
real FFT per frame, and the autocorrelations the other steps read from the power spectra."""
from __future__ import annotations

import numpy as np

FRAME_MS = 10
ANALYSIS_RATE = 12000
HOP = ANALYSIS_RATE * FRAME_MS // 1000  # 120 samples
WIN = ANALYSIS_RATE * 25 // 1000  # 300 samples: 2-3 pitch periods of a low male voice
NFFT = 512
LPC_ORDER = 12  # 6 resonances up to 6 kHz
PRE_EMPHASIS = 0.97


def resample(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT (the whole clip at once; fast enough for minutes of audio)."""
    m = int(round(x.size * new_rate / rate))
    spectrum = np.fft.rfft(x)
    keep = min(spectrum.size, m // 2 + 1)
    return (np.fft.irfft(spectrum[:keep], m) * (m / x.size)).astype(np.float32)


WINDOW = np.hanning(WIN + 2)[1:-1].astype(np.float32)
WINDOW_POWER = float(np.sum(WINDOW ** 2))  # a full-scale sine's window sum is half of this
PRE_EMPHASIS_GAIN = np.abs(1 - PRE_EMPHASIS * np.exp(-2j * np.pi * np.fft.rfftfreq(NFFT))) ** 2


def frames(x: np.ndarray, n: int) -> np.ndarray:
    """(n, WIN) windows centred on t = i * 10 ms (a view into the zero-padded signal)."""
    half = WIN // 2
    padded = np.zeros(n * HOP + WIN, np.float32)
    padded[half:half + x.size] = x[:n * HOP + WIN - half]
    return np.lib.stride_tricks.sliding_window_view(padded, WIN)[::HOP][:n]


def power_spectra(frames: np.ndarray) -> np.ndarray:
    # float64: numpy's float32 FFT is several times slower here.
    return abs2(np.fft.rfft(frames * WINDOW.astype(np.float64), NFFT, axis=1))


def abs2(z: np.ndarray) -> np.ndarray:
    return z.real ** 2 + z.imag ** 2


# Autocorrelation at lag k of a frame = sum over the rfft bins of weight * power * cos(2 pi k bin / NFFT)
# (the irfft written out, with the edge bins counted once).
COSINES = np.cos(2 * np.pi * np.outer(np.arange(NFFT // 2 + 1), np.arange(LPC_ORDER + 1)) / NFFT)
COSINES *= np.where((np.arange(NFFT // 2 + 1) == 0) | (np.arange(NFFT // 2 + 1) == NFFT // 2), 1, 2)[:, None]
COSINES /= NFFT
