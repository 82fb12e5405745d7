"""Lip-sync analysis: how fast a clip is analysed per format, and how well sustained vowels are read per voice.

    python bench/bench_lipsync_analysis.py [--seconds 10] [--runs 7] [--skip-speed] [--skip-vowels]

Speed: a ~10 s espeak-ng sentence converted by ffmpeg to each format; the median over --runs of
lipsync.analyse(bytes) (decode + analysis; target <= 100 ms), wall and CPU time, with decode and analysis
also timed alone.
Vowels: sustained /a/ /i/ /u/ /e/ /o/ made by espeak-ng (phonemes a: i: u: e: o:, slow rate) in male,
female and child-like voices of several languages; the share of sounding frames (open > 0.2) whose highest
vowel weight is the right one. espeak-ng's English u: is a fronted [ʉː] (F2 ~1600-1900 Hz), not /u/.
Needs espeak-ng and ffmpeg on the PATH.
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
    print(f"{'voice':<18}{'vowels':>12}{'closures':>12}   confusions (expected>read)")
    all_votes, all_closures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label in synth.FESTIVAL_VOICES:
            votes, shut = [], []
            for wav, segments in synth.festival(label, tmp):
                track = lipsync.analyse(wav)
                votes += synth.vowel_segment_votes(track, segments)
                shut += [synth.closure_ok(*c) for c in synth.closures(track, segments)]
            right = sum(e == r for e, r in votes)
            confused = Counter(f"{e[0]}>{r[0] if r else '-'}" for e, r in votes if e != r)
            print(f"{label:<18}{right:>4}/{len(votes):<3}{right / len(votes):>4.0%}"
                  f"{sum(shut):>5}/{len(shut):<3}{np.mean(shut):>4.0%}   "
                  + " ".join(f"{k} {n}" for k, n in confused.most_common(5)))
            all_votes += votes
            all_closures += shut
    right = sum(e == r for e, r in all_votes)
    print(f"{'all':<18}{right:>4}/{len(all_votes):<3}{right / len(all_votes):>4.0%}"
          f"{sum(all_closures):>5}/{len(all_closures):<3}{np.mean(all_closures):>4.0%}")
    print()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-vowels", action="store_true")
    ap.add_argument("--skip-festival", action="store_true")
    args = ap.parse_args()
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
