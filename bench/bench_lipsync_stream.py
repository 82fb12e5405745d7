"""Lip-sync on the stream, on this CPU: how soon the mouth opens after a /lipsync request, as a viewer of the
real server receives it over HTTP, and how close lip-synced frames are to the exact render of their pose.

    python -m bench.bench_lipsync_stream [--seconds 20] [--voice en] [--port 5197] [--skip-http]

1. Over HTTP (a real `server.py` process, one PNG viewer of result_feed): POST /lipsync with speech that opens
   the mouth at once (a vowel, espeak-ng), then the time until the viewer receives the first frame whose mouth
   region has visibly opened (mean change of the region > OPEN_LEVELS). The first try comes as soon as the
   viewer has its first frame (no warm-up: the mouth shapes are not made yet); the --repeats that follow each
   send another clip (vowel and pitch change), so no try replays a cached one; reported: the first try, the
   median and the worst of the rest, and every try. Also distinct frames/s received while a --seconds long
   speech plays, and the longest gap between them.
2. In this process (the engine in smooth mode, as the server runs on a CPU): --seconds of espeak-ng speech
   played with lip-sync; every n-th delivered frame against the exact render of its pose (face/full PSNR), as
   bench_stream.py measures idle and talking.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from bench.bench_delivery import Server, Viewer, gap_figures
from bench.bench_stream import Sampler, quality
from bench.common import free_port

ROOT = Path(__file__).resolve().parent.parent

MOUTH = (slice(155, 195), slice(232, 282))  # lambda_00's mouth in the 512 frame
OPEN_LEVELS = 1.0  # mean change of the mouth region: "aaa" half open moves it ~1.3, breathing ~0.3
QUIET = {"blink_probability": 0.0, "sway_macro_strength": 0.0, "sway_micro_strength": 0.0}
SENTENCES = ("Hello there! It is so good to see you again. I was just thinking about our last conversation, "
             "and about the little cafe by the river. Would you like to go there tomorrow afternoon? "
             "They have a new cake, with strawberries and cream, and the owner said it sells out by noon. "
             "Oh, and bring your umbrella, because the forecast says it might rain a little.")


def espeak(text: str, voice: str, *extra: str) -> bytes:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, *extra, "-w", f.name, text], check=True)
        return Path(f.name).read_bytes()


def speech_of(seconds: float, voice: str) -> bytes:
    """`seconds` of espeak-ng speech (the sentences, repeated as needed), as WAV."""
    text = SENTENCES
    while True:
        with wave.open(io.BytesIO(espeak(text, voice))) as w:
            if w.getnframes() >= seconds * w.getframerate():
                params, frames = w.getparams(), w.readframes(int(seconds * w.getframerate()))
                break
        text += " " + SENTENCES
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(frames)
    return out.getvalue()


def mouth_region(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[MOUTH].astype(np.float32)


def open_vowels(voice: str, count: int) -> list[bytes]:
    """`count` different clips that open the mouth at once: the vowels and pitches in turn."""
    kinds = [(vowel, pitch) for pitch in ("50", "35", "65") for vowel in ("A:", "a:", "O:", "E:", "o:")]
    return [espeak(f"[[{vowel * 7}]]", voice, "-s", "80", "-p", pitch) for vowel, pitch in kinds[:count]]


def http_part(args, clips: list[bytes], speech: bytes) -> list[tuple[str, str]]:
    server = Server(args.port or free_port(), [])
    try:
        server.post("/api/talkinghead/load_animator_settings", json=QUIET)
        viewer = Viewer(server.base + "/api/talkinghead/result_feed", inspect=mouth_region)
        viewer.start()
        while not viewer.parts:  # the first try: cold, as soon as the viewer has a frame
            time.sleep(0.01)
        latencies = []
        for i, ah in enumerate(clips):
            if i:
                time.sleep(2.5)  # the mouth closed again
            closed = viewer.parts[-1][2]
            sent = time.monotonic()
            server.post("/api/talkinghead/lipsync", data=ah)
            opened = None
            while time.monotonic() < sent + 3 and opened is None:
                opened = next((t for t, _, mouth in list(viewer.parts)
                               if t > sent and np.abs(mouth - closed).mean() > OPEN_LEVELS), None)
                time.sleep(0.005)
            latencies.append((opened - sent) if opened else float("inf"))
        time.sleep(2.5)
        track = server.post("/api/talkinghead/lipsync", data=speech).json()
        started = time.monotonic()
        time.sleep(track["duration_s"])
        parts, distinct = viewer.rates(started + 1, started + track["duration_s"])
        gaps = gap_figures(viewer.distinct_times(started + 1, started + track["duration_s"]), started + 1,
                           started + track["duration_s"])
        stats = server.get("/api/talkinghead/stats").json()
        viewer.close()
    finally:
        server.close()
    first, rest = latencies[0], latencies[1:] or latencies[:1]
    return [("`/lipsync` → first open-mouth frame received: first try (cold, no warm-up) (ms)",
             f"{first * 1000:.0f}"),
            (f"... the {len(rest)} tries after it, each a different clip: median / worst (ms)",
             f"{statistics.median(rest) * 1000:.0f} / {max(rest) * 1000:.0f}"),
            ("... each try in order (ms)", ", ".join(f"{x * 1000:.0f}" for x in latencies)),
            (f"parts / distinct frames per s received during {track['duration_s']:.0f} s of lip-synced speech",
             f"{parts:.1f} / {distinct:.1f}"),
            ("... gap between distinct frames mean / p99 / max (ms)",
             f"{gaps['mean']:.0f} / {gaps['p99']:.0f} / {gaps['max']:.0f}"),
            ("server render FPS / stale-face frames at the end", f"{stats['render_fps']} / "
                                                                 f"{stats.get('stale_face_frames')}")]


def quality_part(args, speech: bytes):
    from talkinghead import smooth, weights
    from talkinghead.engine import TalkingHead
    from talkinghead.image import load_character
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    smooth.apply_backend(poser, "auto")
    character = load_character(weights.DEFAULT_CHARACTER.read_bytes())
    engine = TalkingHead(poser, smooth=True, seed=7)
    engine.load_animator_settings(json.loads(args.settings))
    engine.start(character)
    time.sleep(5)
    track = engine.lipsync(speech)
    with Sampler(engine, args.sample_every) as s:
        time.sleep(track.duration_s)
    stats = engine.stats()
    engine.close()
    poser.set_image(character)
    return s, quality(poser, s.samples, args.list_below), stats, track


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--voice", default="en")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="tries after the first (cold) one, each another clip")
    ap.add_argument("--sample-every", type=int, default=4)
    ap.add_argument("--settings", default="{}", help="animator settings (JSON) for the quality part")
    ap.add_argument("--list-below", type=float, default=0.0, metavar="DB")
    ap.add_argument("--skip-http", action="store_true")
    args = ap.parse_args()

    clips = open_vowels(args.voice, 1 + args.repeats)
    speech = speech_of(args.seconds, args.voice)
    rows = [] if args.skip_http else http_part(args, clips, speech)
    sampled, q, stats, track = quality_part(args, speech)

    print(f"voice {args.voice}; speech {track.duration_s:.1f} s ({track.voiced_ratio:.0%} voiced); "
          f"{os.cpu_count()} cores\n")
    print("| over HTTP, a real server process | value |\n|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    print("\n| lip-synced stream (in process) | value |\n|---|---:|")
    print(f"| distinct frames/s in the frame slot (in process, not over HTTP: see above for that) | "
          f"{sampled.count / sampled.duration:.2f} |")
    print(f"| face PSNR mean / worst (dB) | {q['face_mean']:.1f} / {q['face_worst']:.1f} |")
    print(f"| full PSNR mean / worst (dB) | {q['full_mean']:.1f} / {q['full_worst']:.1f} |")
    print(f"| frames compared / with a stale face | {q['n']} / {q['stale']} |")
    print(f"| face worst without the stale ones (dB) | {q['fresh_face_worst']:.1f} |")
    print(f"| face cache | {stats.get('face_cache')} |")
    print(f"\nworst face: {q['worst']}")
    for line in q["below"]:
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
