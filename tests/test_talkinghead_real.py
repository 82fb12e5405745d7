"""The talkinghead engine on the real THA3 weights: pixels of `render` and of the stream, and the whole
SillyTavern client sequence (api.md, "Typical client sequence") against a live `--secure` server.

Exact eager frames take ~1.5 s each on a 2-core CPU, so these tests need few frames. Idle motion that would
move pixels at random (blinks, sway, jitter) is switched off with animator settings; breathing cannot be
switched off, so every reference render uses the rotation (breathing) of the frame it is compared with.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from typing import NamedTuple

import numpy as np
import pytest
import requests
from PIL import Image

from server import Config, create_app
from talkinghead import emotions, pose as P, weights
from talkinghead.stream import PartReader
from talkinghead.image import load_character
from talkinghead.settings import VOWEL_MORPHS
from talkinghead.smooth import quantize_face

FEED = "/api/talkinghead/result_feed"
SEED = 20240611
# Idle motion that would move pixels between a frame and its reference, off; a slow breath.
QUIET = {"blink_probability": 0.0, "sway_macro_strength": 0.0, "sway_micro_strength": 0.0,
         "breathing_cycle_duration": 60.0}
# Time after an event by which every eyebrow/face value has reached its target to within 1/64, so the
# engine's quantised pose (steps of 1/32) is exactly the target: 0.9 ** (2.0 * 25) * 32 < 0.2.
SETTLE = 2.0
FACE = (slice(32, 224), slice(160, 352))     # the face morpher's 192x192 box in the 512 frame
MOUTH = (slice(155, 195), slice(232, 282))   # lambda_00's mouth (diff of mouth_aaa 1 vs 0 renders)
BODY = (slice(260, 512), slice(0, 512))      # below the face: only breathing and sway move these pixels
VOWELS = [P.INDEX[name] for name in VOWEL_MORPHS]
LAMBDA_00 = weights.DEFAULT_CHARACTER
LAMBDA_01 = weights.IMAGES_DIR / "lambda_01.png"
FRAME_TIMEOUT = 90.0  # an exact frame is ~1.5 s on an idle 2-core CPU; far more under load


# ---- helpers -------------------------------------------------------------------------------------------
def decode_png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (512, 512)
    return np.asarray(image)


def mean_diff(a: np.ndarray, b: np.ndarray, box=FACE) -> float:
    return float(np.abs(a[box].astype(np.int16) - b[box].astype(np.int16)).mean())


def max_diff(a: np.ndarray, b: np.ndarray, box=(slice(None), slice(None))) -> int:
    return int(np.abs(a[box].astype(np.int16) - b[box].astype(np.int16)).max())


def exact_render(engine, pose: np.ndarray) -> np.ndarray:
    """The poser's own output for `pose`, taken under the engine's poser lock (the poser is not re-entrant
    and the render thread may be mid-frame)."""
    with engine._poser_lock:
        return engine.poser.render(np.asarray(pose, dtype=np.float32))


def template(name: str) -> np.ndarray:
    """An emotion's pose read straight from its JSON file (not through the engine)."""
    return P.from_dict(json.loads((emotions.TEMPLATE_DIR / f"{name}.json").read_text()))


def with_rotation_of(pose: np.ndarray, frame_pose: np.ndarray) -> np.ndarray:
    """`pose` with the head/body/breathing values of a frame's pose (the parts idle motion still moves)."""
    out = np.array(pose, dtype=np.float32)
    out[P.ROTATION] = frame_pose[P.ROTATION]
    return out


class Streamed(NamedTuple):
    seq: int          # the renderer's frame number
    t: float          # the animation time the frame shows
    pose: np.ndarray  # the engine's pose at t, taken before any later event can change the animator
    rgba: np.ndarray  # the decoded PNG as it came over the wire


def streamed_frame(client, engine, not_before: float, newer_than: int = 0) -> Streamed:
    """Open result_feed and read one frame that shows animation time >= not_before and is newer than frame
    number `newer_than`. The frame's time is found by matching the streamed bytes with the renderer's latest
    frame."""
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline:
        latest = engine.slot.latest()
        if latest is None or latest.t < not_before or latest.seq <= newer_than:
            engine.slot.wait_newer(latest.seq if latest else 0, timeout=max(deadline - time.monotonic(), 0.1))
            continue
        response = client.get(FEED)
        assert response.status_code == 200
        parts = PartReader(response.response).read(1)
        response.close()
        assert len(parts) == 1 and parts[0][0]["Content-Type"] == "image/png"
        payload = parts[0][1]
        for frame in (latest, engine.slot.latest()):
            if frame.png == payload:  # otherwise a newer frame landed in between: look again
                return Streamed(frame.seq, frame.t, engine._pose_at(frame.t), decode_png(payload))
    pytest.fail(f"no streamed frame from animation time >= {not_before:.2f} within {FRAME_TIMEOUT:.0f} s "
                f"(renderer: {engine.renderer.last_error or 'no error'})")


def upload(client, data: bytes):
    return client.post("/api/talkinghead/load", data={"file": (io.BytesIO(data), "talkinghead.png")})


# ---- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(real_poser, character_rgba):
    """An exact-mode engine (every frame a real render) on the shared poser, idle motion off, paused
    between tests so it does not eat the CPU."""
    from talkinghead.engine import TalkingHead

    th = TalkingHead(real_poser, smooth=False, seed=SEED, description={"device": "cpu"})
    th.load_animator_settings(QUIET)
    # New settings keep the sway target drawn under the default settings until the next sway segment
    # (5-10 s); an emotion change draws a new one, now with strength 0: the head stays still.
    th.set_emotion("surprise")
    th.set_emotion("neutral")
    th.start(character_rgba)
    th.unload()
    th.ready_at = time.monotonic() + SETTLE  # when the pose is settled after the last event (see `th`)
    yield th
    th.close()


@pytest.fixture
def th(engine, real_poser, character_rgba):
    """The module's engine, paused, neutral, not talking, quiet; `th.ready_at` is when its pose is settled."""
    engine.unload()
    events = engine.animator.generation
    engine.load_emotion_templates({})
    engine.load_animator_settings(QUIET)
    engine.set_emotion("neutral")
    engine.stop_talking()
    if engine.animator.generation != events:  # something had to change: give it time to get there
        engine.ready_at = time.monotonic() + SETTLE
    yield engine
    engine.unload()
    assert np.array_equal(real_poser._rgba, character_rgba), "the shared poser must keep lambda_00"


@pytest.fixture
def client(th):
    return create_app(Config(modules=["talkinghead"]), engines={"talkinghead": th}).test_client()


# ---- render ----------------------------------------------------------------------------------------------
def test_render_returns_the_posers_exact_frame_for_the_pose(client, th):
    given = {"mouth_aaa_index": 0.7, "eye_wink_left_index": 1.0, "eyebrow_raised_right_index": 0.5,
             "iris_rotation_x_index": -0.4, "head_x_index": 0.3, "body_y_index": -0.5, "breathing_index": 0.6}
    response = client.post("/api/talkinghead/render", json={"pose": given})
    assert response.status_code == 200 and response.mimetype == "image/png"
    frame = decode_png(response.data)
    expected = exact_render(th, P.from_dict(given))
    assert max_diff(frame, expected) <= 1
    assert mean_diff(frame, expected, (slice(None), slice(None))) < 0.01


def test_render_with_emotion_is_the_template_with_the_pose_on_top(client, th):
    response = client.post("/api/talkinghead/render", json={"emotion": "anger", "pose": {"head_y_index": -0.6}})
    assert response.status_code == 200 and response.mimetype == "image/png"
    frame = decode_png(response.data)
    pose = template("anger")
    pose[P.INDEX["head_y_index"]] = -0.6
    expected = exact_render(th, pose)
    assert max_diff(frame, expected) <= 1
    # and the emotion is visible: not the neutral face
    assert mean_diff(frame, exact_render(th, with_rotation_of(P.zeros(), pose))) > 1.0


# ---- the stream ------------------------------------------------------------------------------------------
def test_streamed_frame_is_the_exact_render_of_the_animators_pose(client, th):
    assert upload(client, LAMBDA_00.read_bytes()).get_data(as_text=True) == "OK"  # resumes, as the client does
    streamed = streamed_frame(client, th, not_before=th.ready_at)
    th.unload()
    expected = exact_render(th, quantize_face(th.animator.pose_at(streamed.t)))
    assert max_diff(streamed.rgba, expected) <= 1


@pytest.mark.slow
def test_set_emotion_moves_the_streamed_face_to_the_template(client, th):
    assert upload(client, LAMBDA_00.read_bytes()).get_data(as_text=True) == "OK"
    neutral = streamed_frame(client, th, not_before=th.ready_at)
    response = client.post("/api/talkinghead/set_emotion", json={"emotion_name": "surprise"})
    assert response.get_data(as_text=True) == "emotion set to surprise"
    surprised = streamed_frame(client, th, not_before=time.monotonic() + SETTLE, newer_than=neutral.seq)
    th.unload()

    surprise = template("surprise")
    surprise_ref_then = exact_render(th, with_rotation_of(surprise, neutral.pose))
    neutral_ref_then = exact_render(th, with_rotation_of(P.zeros(), neutral.pose))
    surprise_ref_now = exact_render(th, with_rotation_of(surprise, surprised.pose))

    before = mean_diff(neutral.rgba, surprise_ref_then)
    after = mean_diff(surprised.rgba, surprise_ref_now)
    assert before > 1.0, "the surprise template should look clearly different from the neutral face"
    assert after < before / 5, (before, after)
    assert after < 0.5, after  # settled on the template (values within 1/64 of it)
    # the reverse: before set_emotion the frame showed the neutral face, not the template
    assert mean_diff(neutral.rgba, neutral_ref_then) < 0.5 < before


@pytest.mark.slow
def test_start_talking_moves_the_mouth_and_stop_talking_closes_it(client, th):
    assert upload(client, LAMBDA_00.read_bytes()).get_data(as_text=True) == "OK"
    assert client.get("/api/talkinghead/start_talking").get_data(as_text=True) == "talking started"
    started = time.monotonic()
    # Speech opens and closes the mouth ~12 times a second, with pauses between words: a frame catches it open
    # (>= 0.15 in a vowel other than mouth_iii, which barely shows on lambda_00) about 40 % of the time, so
    # wait for such a frame (20 shut frames in a row: odds ~1e-5).
    seen, talking = 0, None
    for _ in range(20):
        streamed = streamed_frame(client, th, not_before=started + 0.2, newer_than=seen)
        seen = streamed.seq
        if np.delete(streamed.pose[VOWELS], VOWEL_MORPHS.index("mouth_iii_index")).max() >= 0.15:
            talking = streamed
            break
    assert talking is not None, "the talking mouth was shut in every one of 20 frames"

    assert client.get("/api/talkinghead/stop_talking").get_data(as_text=True) == "talking stopped"
    stopped = streamed_frame(client, th, not_before=time.monotonic() + SETTLE, newer_than=seen)
    th.unload()  # the references below then get the poser to themselves

    shut = talking.pose.copy()
    shut[VOWELS] = 0.0  # the same frame with the mouth shut
    moved = mean_diff(talking.rgba, exact_render(th, shut), MOUTH)
    assert moved > 0.2, f"mouth region of a talking frame vs the same pose with the mouth shut: {moved}"

    shut = stopped.pose.copy()
    shut[VOWELS] = 0.0  # the neutral mouth, with the frame's breathing
    reference = exact_render(th, shut)
    assert mean_diff(stopped.rgba, reference, MOUTH) < 0.05
    assert max_diff(stopped.rgba, reference, MOUTH) <= 2


# ---- the SillyTavern client, end to end ---------------------------------------------------------------------
ORIGIN = "http://127.0.0.1:8000"
KEY = "0123456789abcdef0123456789abcdef"
CLIENT_HEADERS = {"Origin": ORIGIN, "Authorization": f"Bearer {KEY}", "Bypass-Tunnel-Reminder": "bypass"}


@pytest.fixture
def own_engine(require_weights):
    """A smooth-mode engine (what the server runs on a CPU) on a poser of its own, so the test can switch
    characters without touching the shared poser."""
    from talkinghead.engine import TalkingHead
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    th = TalkingHead(poser, smooth=True, seed=SEED, description={"device": "cpu"})
    th.start(load_character(LAMBDA_00.read_bytes()))
    yield th
    th.close()


def cors(response, origin=ORIGIN):
    assert response.headers.get("Access-Control-Allow-Origin") == origin, (response.request.method,
                                                                            response.url, response.headers)
    assert "Origin" in response.headers.get("Vary", "")
    return response


def preflight(url: str, method: str = "POST") -> None:
    """The browser's OPTIONS before a request with Authorization / JSON (no key on it)."""
    response = cors(requests.options(url, timeout=30, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,bypass-tunnel-reminder,content-type"}))
    assert response.status_code in (200, 204), response.text
    methods = {m.strip().upper() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert method in methods
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert "*" in allowed or {"authorization", "bypass-tunnel-reminder", "content-type"} <= allowed, allowed


def stream_reader(response) -> PartReader:
    return PartReader(response.iter_content(chunk_size=None))


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    """RGB times alpha: what shows over a black background (colours under transparent pixels don't count)."""
    a = rgba.astype(np.int32)
    return a[:, :, :3] * a[:, :, 3:] // 255


def body_distance(frame: np.ndarray, character: np.ndarray) -> float:
    return float(np.abs(premultiplied(frame)[BODY] - premultiplied(character)[BODY]).mean())


def read_frames(reader: PartReader, count: int) -> list[np.ndarray]:
    parts = reader.read(count)
    assert len(parts) == count and all(h["Content-Type"] == "image/png" for h, _ in parts)
    return [decode_png(payload) for _, payload in parts]


@pytest.mark.slow
def test_sillytavern_client_sequence_with_secure_and_cors(own_engine, live_server_factory):
    app = create_app(Config(modules=["classify", "talkinghead"], secure=True, api_key=KEY),
                     engines={"talkinghead": own_engine})
    base = live_server_factory(app).url
    th_url = f"{base}/api/talkinghead"
    with requests.Session() as session:
        session.headers.update(CLIENT_HEADERS)
        run_client_sequence(base, th_url, session)


def run_client_sequence(base: str, th_url: str, session: requests.Session) -> None:
    """api.md's typical client sequence, step by step; every answer must carry the CORS headers."""
    with contextlib.ExitStack() as open_streams:  # closed however the test ends, before the server stops
        _client_sequence(base, th_url, session, open_streams)


def _client_sequence(base: str, th_url: str, session: requests.Session, open_streams) -> None:
    def get(path):
        response = cors(session.get(base + path, timeout=60))
        assert response.status_code == 200, response.text
        return response

    def post_json(path, body):
        preflight(base + path)
        response = cors(session.post(base + path, json=body, timeout=60))
        assert response.status_code == 200, response.text
        return response

    def post_load(path: str):
        with open(path, "rb") as f:  # multipart: no preflight, as the client sends it
            response = cors(session.post(f"{th_url}/load", timeout=120,
                                         files={"file": ("talkinghead.png", f, "image/png")}))
        assert response.status_code == 200 and response.text == "OK", response.text
        return response

    def open_feed():  # as an <img> does: no key
        response = cors(requests.get(f"{th_url}/result_feed", headers={"Origin": ORIGIN}, stream=True,
                                     timeout=120))
        open_streams.callback(response.close)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        return response

    def stats_once_no_viewers(timeout=30.0):
        """/stats as soon as every closed stream has been noticed by the server (or after timeout)."""
        deadline = time.monotonic() + timeout
        while (stats := get("/api/talkinghead/stats").json())["viewers"] and time.monotonic() < deadline:
            time.sleep(0.2)
        return stats

    # 1. connect
    assert get("/api/modules").json()["modules"] == ["classify", "talkinghead"]
    preflight(f"{base}/api/classify/labels", "GET")
    labels = get("/api/classify/labels").json()["labels"]
    assert labels[-1] == "talkinghead" and "joy" in labels

    # --secure: no key or a wrong key is a 401 JSON answer that still carries CORS headers
    for headers in ({"Origin": ORIGIN}, {"Origin": ORIGIN, "Authorization": "Bearer wrong"}):
        response = cors(requests.post(f"{th_url}/set_emotion", json={"emotion_name": "joy"}, headers=headers,
                                      timeout=30))
        assert response.status_code == 401
        assert response.json() == {"error": "401: Invalid API key"}

    # 2. enable talkinghead: load (the <img> opens the feed, without a key, before load has answered)
    loaded = {}

    def load_in_background():
        try:
            loaded["text"] = post_load(str(LAMBDA_00)).text
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            loaded["error"] = repr(e)

    loader = threading.Thread(target=load_in_background)
    loader.start()
    feed = open_feed()
    frames = stream_reader(feed)
    first, = read_frames(frames, 1)
    assert first[:, :, 3].any() and not first[0, 0, 3]  # the character on a transparent background
    lambda_00, lambda_01 = (load_character(path.read_bytes()) for path in (LAMBDA_00, LAMBDA_01))
    assert body_distance(first, lambda_00) < body_distance(first, lambda_01) / 3
    loader.join(timeout=120)
    assert loaded == {"text": "OK"}, loaded
    assert post_json("/api/talkinghead/load_emotion_templates", {}).text == "OK"
    assert post_json("/api/talkinghead/load_animator_settings", {}).text == "OK"

    # 3. a chat message: classify, then set_emotion with the top label; talking while the reply streams
    classification = post_json("/api/classify", {"text": "Yay, we won! I'm so happy, this is the best day "
                                                         "ever!"}).json()["classification"]
    scores = [item["score"] for item in classification]
    assert scores == sorted(scores, reverse=True) and len(classification) == 28
    label = classification[0]["label"]
    assert label == "joy", classification[:3]
    assert post_json("/api/talkinghead/set_emotion", {"emotion_name": label}).text == f"emotion set to {label}"
    assert get("/api/talkinghead/start_talking").text == "talking started"
    assert get("/api/talkinghead/stats").json()["talking"] is True
    read_frames(frames, 3)  # the stream keeps going while commands arrive
    assert get("/api/talkinghead/stop_talking").text == "talking stopped"
    stats = get("/api/talkinghead/stats").json()
    assert (stats["emotion"], stats["talking"], stats["state"]) == ("joy", False, "running")

    # 4. switch character: unload, the <img> is cleared (stream closed), then step 2 with the new one
    assert get("/api/talkinghead/unload").text == "animation paused"
    old, = read_frames(frames, 1)
    feed.close()
    stats = stats_once_no_viewers()
    assert (stats["state"], stats["viewers"]) == ("paused", 0)  # the closed stream freed its thread

    post_load(str(LAMBDA_01))
    assert post_json("/api/talkinghead/load_emotion_templates", {}).text == "OK"
    assert post_json("/api/talkinghead/load_animator_settings", {}).text == "OK"
    feed = open_feed()
    frames = stream_reader(feed)
    # The stream may re-send the old character's last frame until the first one of the new is rendered.
    distances = []  # (to lambda_00, to lambda_01) per frame
    deadline = time.monotonic() + FRAME_TIMEOUT
    while time.monotonic() < deadline:
        frame, = read_frames(frames, 1)
        distances.append((body_distance(frame, lambda_00), body_distance(frame, lambda_01)))
        if distances[-1][1] < distances[-1][0] / 3:
            break
    feed.close()
    assert distances[-1][1] < distances[-1][0] / 3, f"the stream still shows the old character: {distances[-5:]}"
    assert mean_diff(frame, old, (slice(None), slice(None))) > 15
    stats = stats_once_no_viewers()
    assert (stats["emotion"], stats["state"], stats["viewers"]) == ("joy", "running", 0)  # emotion carried over
