"""Lip-sync analysis: how fast a clip is analysed per format, how well vowels and lip closures are read in
Festival's voices (recorded speakers), and sustained vowels per espeak-ng voice.

    python bench/bench_lipsync_analysis.py [--seconds 10] [--runs 7] [--skip-speed] [--skip-vowels]
                                           [--skip-festival] [--fit [VOICE ...]]

Speed: a ~10 s espeak-ng sentence converted by ffmpeg to each format; the median over --runs of
lipsync.analyse(bytes) (decode + analysis; target <= 100 ms), wall and CPU time, with decode and analysis
also timed alone.
Vowels: sustained /a/ /i/ /u/ /e/ /o/ made by espeak-ng (phonemes a: i: u: e: o:, slow rate) in male,
female and child-like voices of several languages; the share of sounding frames (open > 0.2) whose highest
vowel weight is the right one. espeak-ng's English u: is a fronted [ʉː] (F2 ~1600-1900 Hz), not /u/.
Festival: 4 sentences per voice (tests/synth.py: Czech female, male, child; US English male; Finnish female,
male), each phone's timing from Festival's own labels (utt.save.segs). Vowels: the share of vowel segments
(>= 40 ms) whose middle half's frames vote for the right vowel (English: aa/ae a, iy i, uw u, eh/ey e, ao/ow o;
other vowels not scored); closures: the share of /p b m/ between two vowels whose least openness is at most
half the vowels' beside it (mean over their middle halves), and <= 0.1 at the middle of /p b/. The per-clip
vowel prototypes are fitted on the Czech voices (--fit prints them again); the others are held out.
Needs espeak-ng and ffmpeg on the PATH; festival and its voices for that part (scripts/setup.sh --test).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from talkinghead import lipsync  # noqa: E402
from talkinghead.lipsync import mouth, spectra, vowels  # noqa: E402  (the analysis steps, for --fit)
import synth  # noqa: E402  (Festival speech and its scoring, shared with the tests)

SENTENCE = ("Good evening! I have been waiting for you all day. Shall we go for a walk by the river, "
            "or would you rather stay here and tell me about your journey? ")
FORMATS = {
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "ogg vorbis": ["-c:a", "libvorbis", "-q:a", "3", "-f", "ogg"],
    "ogg opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "m4a aac": ["-c:a", "aac", "-b:a", "64k", "-f", "ipod"],
    "webm opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "webm"],
    "wav 48k stereo": ["-c:a", "pcm_s16le", "-ar", "48000", "-ac", "2", "-f", "wav"],
}
VOICES = {  # label: espeak-ng arguments
    "en male": ["-v", "en"],
    "en female": ["-v", "en+f3"],
    "en child-like": ["-v", "en+f4", "-p", "80"],
    "de male": ["-v", "de"],
    "de female": ["-v", "de+f3"],
    "de child-like": ["-v", "de+f4", "-p", "80"],
    "es male": ["-v", "es"],
    "es female": ["-v", "es+f2"],
    "fr male": ["-v", "fr"],
    "it female": ["-v", "it+f2"],
}
PHONEMES = {"aaa": "a:", "iii": "i:", "uuu": "u:", "eee": "e:", "ooo": "o:"}


def espeak(args: list[str], text: str) -> bytes:
    return subprocess.run(["espeak-ng", *args, "--stdout", text], capture_output=True, check=True).stdout


def median_ms(fn, runs: int, clock=time.perf_counter) -> float:
    fn()  # warm-up (imports, FFT plans)
    times = []
    for _ in range(runs):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times) * 1000


def bench_speed(seconds: float, runs: int) -> None:
    wav = espeak(["-v", "en+f3"], SENTENCE * 3)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.wav"
        source.write_bytes(wav)
        clips = {}
        for name, args in FORMATS.items():
            target = Path(tmp) / "clip"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-t", str(seconds), *args,
                            str(target)], check=True)
            clips[name] = target.read_bytes()
    print(f"Analysis of a {seconds:g} s clip (median of {runs} runs, ms; target <= 100 for decode + analysis)")
    print("(cpu: this process's CPU time, which other load on the machine inflates less than the wall time)")
    print(f"{'format':<16}{'KiB':>7}{'duration':>10}{'decode':>9}{'analyse':>9}{'total':>9}{'cpu':>9}")
    for name, data in clips.items():
        samples, rate = lipsync.decode(data, lipsync.ANALYSIS_RATE)
        decode = median_ms(lambda: lipsync.decode(data, lipsync.ANALYSIS_RATE), runs)
        analyse = median_ms(lambda: lipsync.analyse_samples(samples, rate), runs)
        total = median_ms(lambda: lipsync.analyse(data), runs)
        cpu = median_ms(lambda: lipsync.analyse(data), runs, time.process_time)
        print(f"{name:<16}{len(data) / 1024:>7.0f}{len(samples) / rate:>9.2f}s{decode:>9.1f}{analyse:>9.1f}"
              f"{total:>9.1f}{cpu:>9.1f}")
    print()


def bench_vowels() -> None:
    print("Sustained vowels: share of sounding frames whose highest weight is the right vowel")
    print(f"{'voice':<16}" + "".join(f"{v:>7}" for v in lipsync.VOWELS) + f"{'mean':>7}")
    for label, args in VOICES.items():
        row = []
        for index, vowel in enumerate(lipsync.VOWELS):
            track = lipsync.analyse(espeak([*args, "-s", "80"], f"[[{PHONEMES[vowel] * 3}]]"))
            sounding = track.open > 0.2
            row.append(float(np.mean(track.vowels[sounding].argmax(axis=1) == index)))
        cells = "".join(f"{a:>6.0%}" + ("*" if label.startswith("en") and vowel == "uuu" else " ")
                        for a, vowel in zip(row, lipsync.VOWELS))
        print(f"{label:<16}{cells}{np.mean(row):>6.0%}")
    print("* espeak-ng's English u: is a fronted [ʉː], not /u/")


def bench_festival() -> None:
    print("Festival voices (recorded speakers; sentences, phone labels from Festival):")
    print("vowels: share of vowel segments (>= 40 ms) whose middle half reads as the right vowel;")
    print("closures: share of /p b m/ between vowels at most half as open as the vowels (and <= 0.1 mid /p b/)")
    print(f"{'voice':<18}{'vowels':>12}{'closures':>12}   confusions (expected>read)   (*: fitted on)")
    all_votes, all_closures, held_out = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label in synth.FESTIVAL_VOICES:
            votes, shut = [], []
            for wav, segments in synth.festival(label, tmp):
                track = lipsync.analyse(wav)
                votes += synth.vowel_segment_votes(track, segments)
                shut += [synth.closure_ok(*c) for c in synth.closures(track, segments)]
            right = sum(e == r for e, r in votes)
            confused = Counter(f"{e[0]}>{r[0] if r else '-'}" for e, r in votes if e != r)
            fitted = "*" if label.startswith("cs ") else " "
            print(f"{label + fitted:<18}{right:>4}/{len(votes):<3}{right / len(votes):>4.0%}"
                  f"{sum(shut):>5}/{len(shut):<3}{np.mean(shut):>4.0%}   "
                  + " ".join(f"{k} {n}" for k, n in confused.most_common(5)))
            all_votes += votes
            all_closures += shut
            if not fitted.strip():
                held_out += votes
    right = sum(e == r for e, r in all_votes)
    print(f"{'all':<18}{right:>4}/{len(all_votes):<3}{right / len(all_votes):>4.0%}"
          f"{sum(all_closures):>5}/{len(all_closures):<3}{np.mean(all_closures):>4.0%}")
    right = sum(e == r for e, r in held_out)
    print(f"{'held out':<18}{right:>4}/{len(held_out):<3}{right / len(held_out):>4.0%}")
    print()


def fit_prototypes(voices: list[str]) -> None:
    """Print the per-clip (Lobanov) vowel prototypes fitted on `voices`: per vowel, the mean over the voices of
    the median z-score (Bark F1, F2) of its segments' middle halves (the analyser's _CLIP_PROTOTYPES)."""
    per_voice = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in voices:
            z_by_vowel = {name: [] for name in lipsync.VOWELS}
            for wav, segments in synth.festival(label, tmp):
                z, voiced = clip_z_scores(wav)
                for start, end, phone in segments:
                    expected = synth.FESTIVAL_VOWEL_LABELS.get(phone)
                    if expected is None or end - start < 0.04 or z is None:
                        continue
                    quarter = (end - start) / 4
                    frames = np.arange(int(np.ceil((start + quarter) * 100)), int((end - quarter) * 100) + 1)
                    frames = frames[(frames < len(voiced)) & voiced[np.minimum(frames, len(voiced) - 1)]]
                    inside = z[frames]
                    inside = inside[np.isfinite(inside).all(axis=1)]
                    if len(inside):
                        z_by_vowel[expected].append(np.median(inside, axis=0))
            per_voice.append([np.median(z_by_vowel[name], axis=0) for name in lipsync.VOWELS])
    fitted = np.mean(per_voice, axis=0)
    print(f"_CLIP_PROTOTYPES fitted on {', '.join(voices)} (order {', '.join(lipsync.VOWELS)}):")
    print(np.array2string(np.round(fitted, 2), separator=", "))


def clip_z_scores(wav: bytes) -> tuple[np.ndarray | None, np.ndarray]:
    """Per frame the clip's Lobanov z-scores (nan where unvoiced; None if the clip cannot place its speaker)
    and which frames are voiced, as the analyser computes them."""
    samples, rate = lipsync.decode(wav, lipsync.ANALYSIS_RATE)
    n = int(len(samples) / rate * 1000 // lipsync.FRAME_MS) + 1
    power = spectra.power_spectra(spectra.frames(samples, n))
    raw_open, voiced = mouth.loudness_and_voicing(power)
    f1, f2 = vowels._formants(vowels._levinson((power[voiced] * spectra.PRE_EMPHASIS_GAIN) @ spectra.COSINES))
    placed = vowels._speaker_placed(f1, f2, raw_open[voiced])
    if placed is None:
        return None, voiced
    z = np.full((n, 2), np.nan)
    z[voiced] = placed
    return z, voiced


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-vowels", action="store_true")
    ap.add_argument("--skip-festival", action="store_true")
    ap.add_argument("--fit", nargs="*", metavar="VOICE", help="print the per-clip vowel prototypes fitted on these "
                    "Festival voices (default: the Czech ones, as the analyser's) and stop")
    args = ap.parse_args()
    if args.fit is not None:
        fit_prototypes(args.fit or [v for v in synth.FESTIVAL_VOICES if v.startswith("cs ")])
        return 0
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install espeak-ng ffmpeg)", file=sys.stderr)
            return 1
    if not args.skip_speed:
        bench_speed(args.seconds, args.runs)
    if not args.skip_festival:
        if shutil.which("festival") is None:
            print("festival not found: its voices are not measured (scripts/setup.sh --test installs them)")
        else:
            bench_festival()
    if not args.skip_vowels:
        bench_vowels()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
