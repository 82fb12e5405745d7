"""Speech for tests. Synthetic (no TTS engine needed): sustained vowels, a nasal murmur and silence as WAV.
Festival (when installed): sentences in voices cut from recorded speakers, with Festival's own phone labels,
and the measures of a mouth track against those labels (shared with bench/bench_lipsync_analysis.py)."""
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


def murmur(seconds: float, pitch: float = 120.0, level: float = 0.15) -> np.ndarray:
    """A synthetic /m/: the voice through the nose, one low resonance (~250 Hz) and little above 400 Hz."""
    return vowel(seconds, formants=((250, 60),), pitch=pitch, level=level)


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


# --- Festival: diphone voices cut from recordings of real speakers, with the synthesiser's own phone labels ---

# label: (Festival voice function, text encoding, sentences). Each sentence has the five vowels and /p b m/
# between vowels ("mama", "papa"), as a user's TTS would say them.
FESTIVAL_VOICES = {
    "cs female (dita)": ("voice_czech_dita", "iso-8859-2", "cs"),
    "cs male (machac)": ("voice_czech_machac", "iso-8859-2", "cs"),
    "cs child (krb)": ("voice_czech_krb", "iso-8859-2", "cs"),
    "en male (ked)": ("voice_ked_diphone", "latin-1", "en"),
    "fi female (lj)": ("voice_suo_fi_lj_diphone", "latin-1", "fi"),
    "fi male (mv)": ("voice_hy_fi_mv_diphone", "latin-1", "fi"),
}
FESTIVAL_SENTENCES = {
    "cs": ["Máma a táta pojedou na dovolenou do hor.",
           "Babička upekla buchty a Pepa je hned snědl.",
           "Ema má malou mapu a Tomáš pije kávu.",
           "Kupujeme mýdlo, sůl a modrou barvu."],
    "fi": ["Mamma ja pappa menivät kotiin.",
           "Pekka osti lampaan ja omenan.",
           "Kumpi meistä ottaa isomman pipon?",
           "Tuomo ui aamulla kapeassa joessa."],
    "en": ["My mama made a bad apple pie.",
           "Bob keeps a map of the deep blue sea.",
           "Tom put the rope on the boat, and we ate some cheese.",
           "Please feed the puppy a bowl of soup at home."],
}
# The phone labels read as one of the five mouth shapes. English (ked, US phones): aa/ae -> a, iy -> i,
# uw -> u, eh/ey -> e, ao/ow -> o; reduced vowels and the other diphthongs are not scored.
FESTIVAL_VOWEL_LABELS = {
    **{f"{v}{long}": v * 3 for v in "aeiou" for long in ("", ":")},  # Czech and Finnish, short and long
    "aa": "aaa", "ae": "aaa", "iy": "iii", "uw": "uuu", "eh": "eee", "ey": "eee", "ao": "ooo", "ow": "ooo",
}
# Every vowel label of the three phone sets (the neighbours a closure is judged against).
FESTIVAL_ANY_VOWEL = set(FESTIVAL_VOWEL_LABELS) | {"y", "y:", "{", "{:", "&", "&:", "@", "ou", "au", "eu", "ah",
                                                   "ax", "aw", "ay", "er", "ih", "oy", "uh"}
FESTIVAL_CLOSURES = {"p", "b", "m", "p:", "b:", "m:"}  # Finnish writes geminates with ":"


def festival(voice: str, directory, stem: str = "festival") -> list[tuple[bytes, list[tuple[float, float, str]]]]:
    """WAV bytes and phone segments (start s, end s, label) of each sentence of `voice` (a FESTIVAL_VOICES
    label), made in one Festival run with the files under `directory`."""
    import subprocess
    from pathlib import Path

    function, encoding, language = FESTIVAL_VOICES[voice]
    directory = Path(directory)
    script = [f"({function})"]
    for i, text in enumerate(FESTIVAL_SENTENCES[language]):
        base = directory / f"{stem}-{i}"
        script.append(f'(set! utt (utt.synth (Utterance Text "{text}")))'
                      f'(utt.save.wave utt "{base}.wav" \'riff)(utt.save.segs utt "{base}.segs")')
    (directory / f"{stem}.scm").write_bytes("\n".join(script).encode(encoding))
    subprocess.run(["festival", "-b", str(directory / f"{stem}.scm")], check=True, capture_output=True, timeout=120)
    clips = []
    for i in range(len(FESTIVAL_SENTENCES[language])):
        base = directory / f"{stem}-{i}"
        clips.append(((base.with_suffix(".wav")).read_bytes(), _segments(base.with_suffix(".segs").read_text())))
    return clips


def _segments(text: str) -> list[tuple[float, float, str]]:
    """Festival's .segs (a '#' header line, then 'end_time 100 label' per phone) as (start, end, label)."""
    out, start = [], 0.0
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            end = float(parts[0])
            out.append((start, end, parts[2]))
            start = end
    return out


def vowel_segment_votes(track, segments) -> list[tuple[str, str | None]]:
    """(expected, read) per scored vowel segment (>= 40 ms): the middle half's frames vote with their
    strongest vowel weight; read is None when no frame there has a vowel."""
    from collections import Counter

    names = ("aaa", "iii", "uuu", "eee", "ooo")  # lipsync.VOWELS
    out = []
    for start, end, label in segments:
        expected = FESTIVAL_VOWEL_LABELS.get(label)
        if expected is None or end - start < 0.04:
            continue
        quarter = (end - start) / 4
        frames = range(int(np.ceil((start + quarter) * 100)), int((end - quarter) * 100) + 1)
        votes = Counter(names[int(track.vowels[i].argmax())] for i in frames
                        if i < len(track.vowels) and track.vowels[i].sum() > 0)
        out.append((expected, votes.most_common(1)[0][0] if votes else None))
    return out


def closures(track, segments) -> list[tuple[str, float, float, float]]:
    """(label, least openness in the consonant, openness at its middle, mean openness of the two vowels
    beside it (middle half of each)) for each /p b m/ between two vowels."""
    def openness(start, end, part=0.25):
        a, b = start + (end - start) * part, end - (end - start) * part
        i, j = int(np.ceil(a * 100)), int(b * 100)
        values = track.open[i:j + 1]
        return values if values.size else track.open[int(round((a + b) * 50)):][:1]

    out = []
    for k in range(1, len(segments) - 1):
        (ps, pe, prev), (s, e, label), (ns, ne, nxt) = segments[k - 1:k + 2]
        if label in FESTIVAL_CLOSURES and prev in FESTIVAL_ANY_VOWEL and nxt in FESTIVAL_ANY_VOWEL:
            inside = track.open[int(np.ceil(s * 100)):int(e * 100) + 1]  # frames centred within it
            middle = float(track.open[min(int(round((s + e) * 50)), len(track.open) - 1)])
            vowels = (float(openness(ps, pe).mean()) + float(openness(ns, ne).mean())) / 2
            out.append((label, float(inside.min()), middle, vowels))
    return out


def closure_ok(label: str, least: float, middle: float, vowels: float) -> bool:
    """The lips close: at most half as open as the vowels beside, and shut (<= 0.1) mid /p b/."""
    return least <= 0.5 * vowels and (label.startswith("m") or middle <= 0.1)
