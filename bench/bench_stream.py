"""The stream as a viewer sees it, on this CPU: distinct frames per second, how close each delivered frame is
to the exact render of the pose it shows, how fast events show, time to the first frame, peak memory.

    python -m bench.bench_stream [--seconds 30] [--backend auto] [--sample-every 5] [--list-below DB]
                                 [--busy-cores N] [--visible-levels 8] [--visible-pixels 20]

Runs the real engine (smooth mode, as the server does on a CPU) in this process with the classifier loaded
too (for peak RSS), serves it over HTTP (the server's app and waitress, on a loopback port) to one PNG viewer of
result_feed, and afterwards renders the exact frame of each sampled pose with the same poser. Frames/s, gaps
and event latencies are what that viewer receives: distinct = bytes differ from the part before, visible =
at least --visible-pixels pixels differ by more than --visible-levels (of 255); an event shows when a frame
received after the command differs visibly *in the face* from the last one received before it (idle motion
that moves the face — blinks, sway — is switched off for the events; breathing stays). The quality columns
need each frame's pose, known only in process: they sample the frame slot (each sampled frame encoded as the
viewers get it). PSNR is on RGB composited over mid-grey, 8-bit; "face" is rows 32:224, cols 160:352.
--busy-cores N: N other processes busy-loop (at normal priority) while the smooth stream runs, as a chat
client or a local LLM would compete for the cores; the stream should keep its FPS, making fewer keyframes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from bench.bench_delivery import Viewer, gap_figures
from talkinghead import backends, smooth, weights
from talkinghead.engine import TalkingHead
from talkinghead.image import load_character
from talkinghead.tha3.poser import Poser

FACE = (slice(32, 224), slice(160, 352))
# For the event latencies: idle motion that moves the face off (breathing stays).
QUIET_FACE = {"blink_probability": 0.0, "sway_macro_strength": 0.0, "sway_micro_strength": 0.0}


def serve(engine: TalkingHead):
    """The server's app on `engine`, on a loopback port (waitress on a thread, as server.py runs it)."""
    from server import Config, create_app, make_server

    class Http:
        def __init__(self):
            app = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": engine})
            self.server = make_server(app, host="127.0.0.1", port=0, threads=16, asyncore_use_poll=True)
            self.url = f"http://127.0.0.1:{self.server.effective_port}"
            self.thread = threading.Thread(target=self.server.run, daemon=True)
            self.thread.start()

        def close(self):
            self.server.close()
            self.thread.join(timeout=5)

    return Http()


def over_grey(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return rgba[..., :3].astype(np.float64) * a + 128.0 * (1.0 - a)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse < 1e-10 else 10 * np.log10(255.0 ** 2 / mse)


def new_frames(slot, stop: threading.Event):
    """Every frame published to the slot from now until `stop`, each encoded as a viewer of the PNG stream has
    it encoded (on the caller's thread)."""
    seq = slot.latest().seq
    while not stop.is_set():
        frame = slot.wait_newer(seq, timeout=0.2)
        if frame is None or frame.seq == seq:
            continue
        seq = frame.seq
        frame.png  # noqa: B018 - the encoding a viewer makes
        yield frame


class Sampler:
    """Watches the latest-frame slot like a viewer of the PNG stream (each new frame is encoded, as the stream
    has it encoded): counts distinct frames, keeps every n-th with its pose."""

    def __init__(self, engine: TalkingHead, every: int):
        self.engine, self.every = engine, every
        self.count, self.samples, self._stop = 0, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.duration = time.monotonic() - self.started

    def _run(self):
        for frame in new_frames(self.engine.slot, self._stop):
            self.count += 1
            if self.count % self.every == 0:
                self.samples.append((frame.rgba.copy(), frame.t, dict(frame.meta)))


def quality(poser: Poser, samples, list_below: float = 0.0) -> dict:
    face, full, stale = [], [], []
    for rgba, _, meta in samples:
        exact = over_grey(poser.render(meta["pose"]))
        got = over_grey(rgba)
        face.append(psnr(got[FACE], exact[FACE]))
        full.append(psnr(got, exact))
        stale.append(bool(meta.get("stale_face")))
    fresh = [f for f, s in zip(face, stale) if not s] or [float("nan")]
    worst = int(np.argmin(face))
    started = samples[0][1] if samples else 0.0
    below = [f"{samples[i][1] - started:6.2f} s: face {face[i]:.1f} dB, {_how_made(samples[i])}"
             for i in range(len(face)) if face[i] < list_below]
    return {"face_mean": statistics.mean(face), "face_worst": min(face),
            "full_mean": statistics.mean(full), "full_worst": min(full), "n": len(face),
            "stale": sum(stale), "fresh_face_worst": min(fresh), "worst": _how_made(samples[worst]),
            "below": below}


def _how_made(sample) -> str:
    """How the smooth source made a frame: which keyframes (their numbers) with which weights, the blend's
    estimated error (talkinghead.smooth.interpolation), and whether the face was stale."""
    _, _, meta = sample
    return (f"keyframes {meta.get('keyframes')}, weights {meta.get('blend')}, blend error "
            f"{meta.get('blend_error')}, stale face {bool(meta.get('stale_face'))}")


class FaceChange:
    """An `inspect` for bench_delivery.Viewer: the frame's face region, kept (as int16) for event latency."""

    def __call__(self, data: bytes) -> np.ndarray:
        import io

        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"), np.int16)[FACE]


def event_latency(viewer, command, levels: int, pixels: int) -> float:
    """Seconds from a command to the first frame the HTTP viewer receives whose face visibly differs (at least
    `pixels` pixels by more than `levels`) from the last face it received before the command."""
    before = viewer.parts[-1][2]
    start = time.monotonic()
    command()
    seen = len(viewer.parts)
    while time.monotonic() - start < 5:
        parts = viewer.parts[seen - 1:]
        for t, _, face in parts:
            if t > start and int((np.abs(face - before).max(axis=2) > levels).sum()) >= pixels:
                return t - start
        seen = max(seen, len(viewer.parts))
        time.sleep(0.002)
    return float("inf")


def http_figures(viewer, t0: float, t1: float, levels: int, pixels: int) -> dict:
    """What the HTTP viewer received in [t0, t1): distinct and visible frames/s, and the gaps between them."""
    times, before = [], None
    distinct = viewer.distinct_times(t0, t1)
    for t, _, face in list(viewer.parts):
        if before is None or int((np.abs(face - before).max(axis=2) > levels).sum()) >= pixels:
            if t0 <= t < t1:
                times.append(t)
        before = face
    return {"distinct": len(distinct) / (t1 - t0), "distinct_gaps": gap_figures(distinct, t0, t1),
            "visible": len(times) / (t1 - t0), "visible_gaps": gap_figures(times, t0, t1)}


@contextlib.contextmanager
def busy_cores(count: int):
    """`count` processes that keep one core busy each, for the duration."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--sample-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="backend threads per network (default: as the server)")
    ap.add_argument("--list-below", type=float, default=0.0, metavar="DB",
                    help="list the sampled frames whose face PSNR is below this, with how they were made")
    ap.add_argument("--settings", default="{}", help='animator settings as JSON, e.g. {"sway_micro_strength": 0}')
    ap.add_argument("--busy-cores", type=int, default=0, metavar="N",
                    help="N busy-looping processes compete for the cores while the smooth stream runs")
    ap.add_argument("--visible-levels", type=int, default=8, help="a pixel changed: by more than this (of 255)")
    ap.add_argument("--visible-pixels", type=int, default=20, help="a frame visibly new: this many pixels changed")
    args = ap.parse_args()
    vis = (args.visible_levels, args.visible_pixels)
    settings = json.loads(args.settings)

    from classifier import load_classifier

    classifier = load_classifier()
    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    smooth.apply_backend(poser, args.backend, threads=args.threads)
    backend = backends.active_backend(poser)
    character = load_character(weights.DEFAULT_CHARACTER.read_bytes())
    other = load_character((weights.IMAGES_DIR / "lambda_01.png").read_bytes())

    rows = []
    # The exact path for comparison (every frame a full render), a short run.
    exact_engine = TalkingHead(poser, smooth=False, seed=7)
    exact_engine.load_animator_settings(settings)
    exact_engine.start(character)
    with Sampler(exact_engine, every=10**9) as s:
        time.sleep(min(10.0, args.seconds))
    exact_engine.close()
    rows.append(("exact renders only (idle)", s.count / s.duration, None))

    engine = TalkingHead(poser, smooth=True, seed=7)
    engine.load_animator_settings(settings)
    load = contextlib.ExitStack()
    load.enter_context(busy_cores(args.busy_cores))
    t0 = time.monotonic()
    engine.start(character)
    first_frame_start = time.monotonic() - t0
    http = serve(engine)
    viewer = Viewer(http.url + "/api/talkinghead/result_feed", inspect=FaceChange())
    asked = time.monotonic()
    viewer.start()
    time.sleep(3)  # let the worker get ahead of the clock
    first_received = viewer.parts[0][0] - asked if viewer.parts else float("inf")
    with Sampler(engine, args.sample_every) as idle:
        for text in ("I love this!", "What do you mean?", "That is so sad.") * 3:
            classifier.classify(text)
        time.sleep(args.seconds)
    http_idle = http_figures(viewer, idle.started, idle.started + idle.duration, *vis)
    engine.start_talking()
    time.sleep(1)
    with Sampler(engine, args.sample_every) as talking:
        time.sleep(args.seconds)
    http_talking = http_figures(viewer, talking.started, talking.started + talking.duration, *vis)
    engine.stop_talking()
    engine.load_animator_settings({**settings, **QUIET_FACE})  # only the events move the face now
    engine.set_emotion("neutral")
    time.sleep(3)
    latencies = {
        "set_emotion surprise": event_latency(viewer, lambda: engine.set_emotion("surprise"), *vis),
        "start_talking": event_latency(viewer, engine.start_talking, *vis),
        "stop_talking": event_latency(viewer, engine.stop_talking, *vis),
        "set_emotion joy": event_latency(viewer, lambda: engine.set_emotion("joy"), *vis),
    }
    viewer.close()
    time.sleep(1.5)  # the server notices the closed stream before it closes
    http.close()
    t0 = time.monotonic()
    engine.load(_png(other))
    new_character = engine.source.character  # frames of the new character carry it in their meta
    deadline = t0 + 30
    while engine.slot.latest().meta.get("character") != new_character and time.monotonic() < deadline:
        time.sleep(0.001)
    load_to_first = time.monotonic() - t0
    while engine.slot.latest().meta.get("placeholder") and time.monotonic() < deadline:
        time.sleep(0.001)
    load_to_posed = time.monotonic() - t0  # ... posed and animated (not the image as uploaded)
    stats = engine.stats()
    engine.close()
    load.close()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    poser.set_image(character)  # the samples show the first character
    q_idle, q_talk = (quality(poser, s.samples, args.list_below) for s in (idle, talking))
    rows += [("smooth stream, idle", idle.count / idle.duration, q_idle),
             ("smooth stream, talking", talking.count / talking.duration, q_talk)]
    print(f"over HTTP (one PNG viewer of result_feed): visible = >= {args.visible_pixels} pixels changed by > "
          f"{args.visible_levels} levels; first frame received {first_received * 1000:.0f} ms after the request\n")
    print("| smooth stream over HTTP | distinct frames/s | gap mean / p99 / max (ms) | visible frames/s "
          "| gap mean / p99 / max (ms) |\n|---|---:|---:|---:|---:|")
    for label, h in (("idle", http_idle), ("talking", http_talking)):
        dg, vg = h["distinct_gaps"], h["visible_gaps"]
        print(f"| {label} | {h['distinct']:.2f} | {dg['mean']:.0f} / {dg['p99']:.0f} / {dg['max']:.0f} | "
              f"{h['visible']:.2f} | {vg['mean']:.0f} / {vg['p99']:.0f} / {vg['max']:.0f} |")
    print()

    print(f"backend: {backend}; animator settings {settings or 'defaults'}; {args.seconds:.0f} s per phase; "
          f"{args.busy_cores} busy-looping processes beside the smooth stream; quality sampled every {args.sample_every}th "
          f"delivered frame; face cache {stats.get('face_cache')}, stale-face frames "
          f"{stats.get('stale_face_frames')}, last keyframe {stats.get('keyframe_ms')} ms\n")
    print("| stream (in process: the frame slot, poses known) | distinct frames/s | face PSNR mean / worst (dB) "
          "| full PSNR mean / worst (dB) | frames compared "
          "| of them with a stale face | face worst without those (dB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, fps, q in rows:
        if q is None:
            print(f"| {label} | {fps:.2f} | exact | exact | – | – | – |")
        else:
            print(f"| {label} | {fps:.2f} | {q['face_mean']:.1f} / {q['face_worst']:.1f} | "
                  f"{q['full_mean']:.1f} / {q['full_worst']:.1f} | {q['n']} | {q['stale']} | "
                  f"{q['fresh_face_worst']:.1f} |")
    for label, _, q in rows:
        if q is not None:
            print(f"worst face, {label}: {q['worst']}")
            for line in q["below"]:
                print(f"    {label}, {line}")
    print("\n| event (over HTTP) | time to the first frame received whose face visibly changed (ms) |")
    print("|---|---:|")
    for label, seconds in latencies.items():
        print(f"| {label} | {seconds * 1000:.0f} |")
    print(f"\n| start-up and memory | value |\n|---|---:|\n| first frame at start (render on the calling "
          f"thread) | {first_frame_start * 1000:.0f} ms |\n| `load` of a new character → its first frame | "
          f"{load_to_first * 1000:.0f} ms |\n| ... its first posed frame (before it: the image as uploaded) | "
          f"{load_to_posed * 1000:.0f} ms |\n| peak RSS, classifier + talkinghead | {peak_rss_mb:.0f} MB |")
    return 0


def _png(rgba: np.ndarray) -> bytes:
    from talkinghead import encode

    return encode.png(rgba)


if __name__ == "__main__":
    sys.exit(main())
