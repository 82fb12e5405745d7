"""The talkinghead HTTP contract on a fast fake poser: stream bytes, commands, bad input, many viewers."""
from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from server import Config, create_app
from talkinghead import stream


def png_bytes(size=(512, 512), mode="RGBA", color=(10, 200, 30, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color[:len(mode)] if mode != "P" else 0).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def app(fake_engine):
    return create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine})


@pytest.fixture
def client(app):
    return app.test_client()


def read_parts(chunks, count):
    """The next `count` parts of a result_feed body: [(headers, payload)]."""
    return stream.PartReader(chunks).read(count)


def test_result_feed_is_multipart_png_stream(client):
    response = client.get("/api/talkinghead/result_feed")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    parts = read_parts(response.response, 3)
    response.close()
    assert len(parts) == 3
    for headers, payload in parts:
        assert headers["Content-Type"] == "image/png"
        image = Image.open(io.BytesIO(payload))
        assert image.size == (512, 512) and image.mode == "RGBA"


def test_result_feed_jpeg_composites_over_background(client):
    response = client.get("/api/talkinghead/result_feed?format=jpeg&bg=00ff00")
    (headers, payload), = read_parts(response.response, 1)
    response.close()
    assert headers["Content-Type"] == "image/jpeg"
    image = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")).astype(int)
    assert image.shape == (512, 512, 3)
    assert np.abs(image[5, 5] - [0, 255, 0]).max() <= 3  # transparent corner shows the background
    assert np.abs(image[256, 256] - [200, 100, 50]).max() <= 40  # the character (brightened by the mouth)


def test_result_feed_rejects_bad_format_and_colour(client):
    assert client.get("/api/talkinghead/result_feed?format=gif").status_code == 400
    response = client.get("/api/talkinghead/result_feed?format=jpeg&bg=green")
    assert response.status_code == 400 and "RRGGBB" in response.get_json()["error"]


def test_frames_are_paced_at_target_fps(client, fake_engine):
    """At target_fps 10 a viewer gets 10 frames a second: counted over 2 s after the first (frames sit on the
    1/fps grid, so a late one does not change the count much); 4 or 25 FPS fail."""
    assert client.post("/api/talkinghead/load_animator_settings", json={"target_fps": 10}).status_code == 200
    time.sleep(0.2)  # the frame at the old rate already on its way
    response = client.get("/api/talkinghead/result_feed")
    reader, arrivals = stream.PartReader(response.response), []
    while not arrivals or arrivals[-1] - arrivals[0] < 2.0:
        assert len(reader.read(1)) == 1
        arrivals.append(time.monotonic())
    response.close()
    in_two_seconds = sum(1 for t in arrivals[1:] if t - arrivals[0] < 2.0)
    assert 18 <= in_two_seconds <= 22, [round(t - arrivals[0], 3) for t in arrivals]


def test_text_commands_answer_as_the_client_expects(client, fake_engine):
    assert client.get("/api/talkinghead/start_talking").get_data(as_text=True) == "talking started"
    assert fake_engine.animator.talking
    assert client.get("/api/talkinghead/stop_talking").get_data(as_text=True) == "talking stopped"
    assert not fake_engine.animator.talking
    response = client.post("/api/talkinghead/set_emotion", json={"emotion_name": "joy"})
    assert response.get_data(as_text=True) == "emotion set to joy"
    response = client.post("/api/talkinghead/set_emotion", json={"emotion_name": "hyperspace"})
    assert response.status_code == 200 and response.get_data(as_text=True) == "emotion set to neutral"
    assert client.post("/api/talkinghead/load_emotion_templates", json={}).get_data(as_text=True) == "OK"
    assert client.post("/api/talkinghead/load_animator_settings", json={}).get_data(as_text=True) == "OK"


def test_unload_pauses_rendering_and_load_resumes(client, fake_engine):
    assert client.get("/api/talkinghead/unload").get_data(as_text=True) == "animation paused"
    time.sleep(0.2)
    before = fake_engine.renderer.frames_rendered
    time.sleep(0.5)
    assert fake_engine.renderer.frames_rendered - before <= 1
    assert client.get("/api/talkinghead/stats").get_json()["state"] == "paused"
    response = client.post("/api/talkinghead/load", data={"file": (io.BytesIO(png_bytes()), "talkinghead.png")})
    assert response.get_data(as_text=True) == "OK"
    time.sleep(0.5)
    assert fake_engine.renderer.frames_rendered > before + 3
    assert (fake_engine.poser.image[0, 0] == [10, 200, 30, 255]).all()


def test_emotion_and_talking_carry_over_to_a_new_character(client, fake_engine):
    client.post("/api/talkinghead/set_emotion", json={"emotion_name": "anger"})
    client.get("/api/talkinghead/start_talking")
    client.get("/api/talkinghead/unload")
    client.post("/api/talkinghead/load", data={"file": (io.BytesIO(png_bytes()), "talkinghead.png")})
    stats = client.get("/api/talkinghead/stats").get_json()
    assert (stats["emotion"], stats["talking"], stats["state"]) == ("anger", True, "running")


def test_smaller_image_is_centred_not_enlarged(client, fake_engine):
    response = client.post("/api/talkinghead/load",
                           data={"file": (io.BytesIO(png_bytes((100, 50))), "small.png")})
    assert response.status_code == 200
    image = fake_engine.poser.image
    assert image[256, 256, 3] == 255 and image[0, 0, 3] == 0
    rows = np.where(image[:, :, 3].any(axis=1))[0]
    cols = np.where(image[:, :, 3].any(axis=0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (231, 281, 206, 306)


def test_large_image_is_scaled_down_to_fit(client, fake_engine):
    response = client.post("/api/talkinghead/load", data={"file": (io.BytesIO(png_bytes((1024, 2048))), "big.png")})
    assert response.status_code == 200
    cols = np.where(fake_engine.poser.image[:, :, 3].any(axis=0))[0]
    assert (cols[0], cols[-1] + 1) == (128, 384)


def bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("LA", (20000, 20000)).save(buf, format="PNG")  # 400 Mpx, compresses to a few hundred KB
    return buf.getvalue()


@pytest.mark.parametrize("data, field, message", [
    (b"this is not an image", "file", "not a readable image"),
    (png_bytes()[:200], "file", "not a readable image"),
    (png_bytes(mode="RGB"), "file", "no alpha channel"),
    (b"", "file", "empty"),
    (png_bytes(), "image", "field 'file'"),
    (bomb_png(), "file", "too large"),
])
def test_bad_upload_is_400_and_keeps_the_character(client, fake_engine, data, field, message):
    before = fake_engine.poser.image.copy()
    response = client.post("/api/talkinghead/load", data={field: (io.BytesIO(data), "x.png")})
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert (fake_engine.poser.image == before).all()
    assert not fake_engine.renderer.paused


@pytest.mark.parametrize("path, body, status, message", [
    ("set_emotion", "not json", 415, "JSON"),
    ("set_emotion", ["joy"], 400, "object"),
    ("set_emotion", {"emotion": "joy"}, 400, "emotion_name"),
    ("load_animator_settings", {"no_such_setting": 1}, 400, "no_such_setting"),
    ("load_animator_settings", {"target_fps": 0}, 400, "target_fps"),
    ("load_animator_settings", {"target_fps": "fast"}, 400, "target_fps"),
    ("load_emotion_templates", {"joy": {"mouth_wobble": 1.0}}, 400, "mouth_wobble"),
    ("load_emotion_templates", {"joy": "happy"}, 400, "joy"),
])
def test_bad_json_is_4xx_with_message_and_keeps_settings(client, fake_engine, path, body, status, message):
    fps = fake_engine.animator.settings.target_fps
    if isinstance(body, str):
        response = client.post(f"/api/talkinghead/{path}", data=body, content_type="text/plain")
    else:
        response = client.post(f"/api/talkinghead/{path}", json=body)
    assert response.status_code == status
    assert message in response.get_json()["error"]
    assert fake_engine.animator.settings.target_fps == fps


def test_render_returns_png_and_validates_pose(client):
    response = client.post("/api/talkinghead/render", json={"pose": {"mouth_aaa_index": 1.0}})
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert Image.open(io.BytesIO(response.data)).size == (512, 512)
    assert client.post("/api/talkinghead/render", json={"emotion": "joy"}).status_code == 200
    for body, message in ([{"pose": {"mouth_wobble": 1}}, "mouth_wobble"],
                          [{"pose": {"head_x_index": 3}}, "out of range"],
                          [{"emotion": "hyperspace"}, "unknown emotion"],
                          [{"pose": [1, 2]}, "object"],
                          [{}, "pose"]):
        response = client.post("/api/talkinghead/render", json=body)
        assert response.status_code == 400 and message in response.get_json()["error"], body


def test_emotions_lists_the_28_templates(client):
    templates = client.get("/api/talkinghead/emotions").get_json()
    assert len(templates) == 28 and templates["neutral"] == {}
    assert all(isinstance(v, float) for t in templates.values() for v in t.values())


def test_stills_asked_at_once_from_many_connections_all_come_back_from_one_thread(app, fake_engine,
                                                                                   live_server_factory):
    """Stills are rendered on the server's one stills thread (their temporaries stay in one allocator arena):
    requests that come together each get their own exact PNG, and /stats counts that thread's CPU."""
    server = live_server_factory(app)
    mouths = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # the fake poser brightens the image with the mouth

    def still(mouth: float) -> bytes:
        response = requests.post(server.url + "/api/talkinghead/render", json={"pose": {"mouth_aaa_index": mouth}},
                                 timeout=30)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        return response.content

    with ThreadPoolExecutor(len(mouths)) as pool:
        together = list(pool.map(still, mouths))
    assert together == [still(mouth) for mouth in mouths]  # each its own pose, the same as asked one by one
    assert len(set(together)) == len(mouths)
    assert "exact stills" in requests.get(server.url + "/api/talkinghead/stats", timeout=10).json()["cpu_seconds"]


def test_stats_reports_rendering(client, fake_engine):
    """The values, not just the keys: the rate it renders at, what it runs on, its state, its viewers."""
    time.sleep(1.0)
    first = client.get("/api/talkinghead/stats").get_json()
    time.sleep(1.0)
    stats = client.get("/api/talkinghead/stats").get_json()
    assert stats["target_fps"] == 25
    assert 18 <= stats["render_fps"] <= 26, stats  # 25 FPS on the fake poser (5 ms a frame)
    assert 15 <= stats["frames_rendered"] - first["frames_rendered"] <= 30, (first, stats)
    assert (stats["backend"], stats["device"], stats["model"], stats["mode"]) == ("fake", "cpu", "fake", "exact")
    assert stats["ms_per_stage"] == {"fake": 0.1}
    assert (stats["state"], stats["emotion"], stats["talking"], stats["last_error"]) == ("running", "neutral",
                                                                                         False, None)
    assert stats["viewers"] == 0 and stats["lipsync_tracks"] == 0
    assert stats["cpu_seconds"] and all(v >= 0 for v in stats["cpu_seconds"].values()), stats["cpu_seconds"]
    response = client.get("/api/talkinghead/result_feed")
    assert len(read_parts(response.response, 1)) == 1
    assert client.get("/api/talkinghead/stats").get_json()["viewers"] == 1  # the open stream
    response.close()


def test_two_viewers_one_renderer_and_disconnect_frees_viewer(app, fake_engine, live_server_factory):
    server = live_server_factory(app)
    url = f"{server.url}/api/talkinghead/result_feed"
    streams = [requests.get(url, stream=True, timeout=10) for _ in range(2)]
    for r in streams:
        assert len(read_parts(r.iter_content(8192), 2)) == 2
    assert fake_engine.viewers.count == 2
    renders_before, t0 = fake_engine.poser.renders, time.monotonic()
    time.sleep(1.0)
    rate = (fake_engine.poser.renders - renders_before) / (time.monotonic() - t0)
    assert rate <= fake_engine.animator.settings.target_fps * 1.2  # not one render per viewer
    for r in streams:
        r.close()
    deadline = time.monotonic() + 10
    while fake_engine.viewers.count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake_engine.viewers.count == 0


def test_viewer_connecting_before_load_finishes_sees_the_new_character(app, fake_engine, live_server_factory):
    server = live_server_factory(app)
    feed = requests.get(f"{server.url}/api/talkinghead/result_feed", stream=True, timeout=10)
    reader = stream.PartReader(feed.iter_content(8192))
    reader.read(1)
    requests.post(f"{server.url}/api/talkinghead/load", files={"file": ("t.png", png_bytes(), "image/png")},
                  timeout=10).raise_for_status()
    time.sleep(0.3)
    headers, payload = reader.read(3)[-1]
    feed.close()
    corner = np.asarray(Image.open(io.BytesIO(payload)))[2, 250]
    assert corner[3] == 255  # the new (fully opaque) character, not the old one with a transparent border


def test_result_feed_is_exempt_from_api_key(fake_engine):
    app = create_app(Config(modules=["talkinghead"], secure=True, api_key="s" * 32),
                     engines={"talkinghead": fake_engine})
    client = app.test_client()
    assert client.get("/api/talkinghead/unload").status_code == 401
    response = client.get("/api/talkinghead/result_feed")
    assert response.status_code == 200
    assert len(read_parts(response.response, 1)) == 1
    response.close()


def test_part_framing():
    assert stream.part_head("image/png") == b"--frame\r\nContent-Type: image/png\r\n\r\n"
