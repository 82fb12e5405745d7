"""Synthetic speech for tests that must not depend on a TTS engine: sustained vowels and silence as WAV."""
from __future__ import annotations

import io
import wave

import numpy as np

RATE = 16000
# Formants (Hz, bandwidth) of an adult /a/: harmonics shaped by these resonances sound like a sung "aah".
A_FORMANTS = ((800, 80), (1200, 90), (2500, 120))


def vowel(seconds: float, formants=A_FORMANTS, pitch: float = 120.0, level: float = 0.3) -> np.ndarray:
    """A synthetic sustained vowel: the harmonics of `pitch`, each as loud as the formant resonances make it."""
    t = np.arange(int(seconds * RATE)) / RATE
    harmonics = np.arange(pitch, RATE / 2, pitch)
    gain = np.ones_like(harmonics)
    for freq, bandwidth in formants:  # a two-pole resonance's magnitude at each harmonic
        gain *= 1.0 / np.sqrt((1 - (harmonics / freq) ** 2) ** 2 + (harmonics * bandwidth / freq ** 2) ** 2)
    out = (gain[:, None] * np.sin(2 * np.pi * harmonics[:, None] * t)).sum(axis=0)
    ramp = np.minimum(1.0, np.minimum(np.arange(len(t)), np.arange(len(t))[::-1]) / (0.01 * RATE))  # no clicks
    return level * out / np.abs(out).max() * ramp


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()
