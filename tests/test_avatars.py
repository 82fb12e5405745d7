"""Several avatars on one server (/api/talkinghead/avatars): each animates on its own (emotion, talking, lip-sync,
its stream), the old routes act on the default one as before, errors for unknown and bad ids, duplicates and
past the cap, and a deleted avatar's threads and streams end. On the fake poser, but for the last tests, which
check that avatars share the real networks."""
from __future__ import annotations

import gc
import io
import threading
import time
import weakref

import numpy as np
import pytest
import requests

from server import Config, create_app
from talkinghead import encode, pose as P, stream
from synth import silence, vowel, wav_bytes

AVATARS = "/api/talkinghead/avatars"
VOWELS = [P.INDEX[name] for name in ("mouth_aaa_index", "mouth_iii_index", "mouth_uuu_index", "mouth_eee_index",
                                     "mouth_ooo_index")]
SPEECH = wav_bytes(np.concatenate([silence(0.2), vowel(1.5), silence(0.3)]))


@pytest.fixture
def app(fake_engine):
    app = create_app(Config(modules=["talkinghead"], talkinghead_max_avatars=3), engines={"talkinghead": fake_engine})
    yield app
    app.extensions["talkinghead_avatars"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def avatar(app, avatar_id: str):
    return app.extensions["talkinghead_avatars"].get(avatar_id)


def character_png(colour=(10, 200, 30, 255)) -> bytes:
    image = np.zeros((512, 512, 4), np.uint8)
    image[100:400, 150:350] = colour
    return encode.png(image)


def mouth(engine) -> float:
    return float(engine.animator.pose_at(time.monotonic())[VOWELS].sum())


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


# -- making, listing, deleting --------------------------------------------------------------------------------
def test_make_list_and_delete_avatars(client, app):
    assert client.get(AVATARS).get_json() == {
        "avatars": [{"id": "default", "emotion": "neutral", "talking": False, "viewers": 0}], "max_avatars": 3}
    made = client.post(AVATARS, json={"id": "alice"})
    assert (made.status_code, made.get_json()) == (201, {"id": "alice"})
    anonymous = client.post(AVATARS)
    assert anonymous.status_code == 201 and anonymous.get_json()["id"] != "alice"
    listed = client.get(AVATARS).get_json()["avatars"]
    assert [a["id"] for a in listed] == ["default", "alice", anonymous.get_json()["id"]]
    gone = client.delete(f"{AVATARS}/alice")
    assert (gone.status_code, gone.get_json()) == (200, {"id": "alice", "deleted": True})
    assert [a["id"] for a in client.get(AVATARS).get_json()["avatars"]] == ["default", anonymous.get_json()["id"]]


def test_an_avatar_made_with_an_image_shows_it_the_others_keep_theirs(client, app, fake_engine):
    default_image = fake_engine.poser.image.copy()
    made = client.post(AVATARS, data={"id": "bob", "file": (io.BytesIO(character_png()), "bob.png")})
    assert made.status_code == 201, made.get_json()
    assert (avatar(app, "bob").poser.image[250, 250] == [10, 200, 30, 255]).all()
    assert (fake_engine.poser.image == default_image).all()
    client.post(f"{AVATARS}/bob/load", data={"file": (io.BytesIO(character_png((1, 2, 3, 255))), "b.png")})
    assert (avatar(app, "bob").poser.image[250, 250] == [1, 2, 3, 255]).all()
    assert (fake_engine.poser.image == default_image).all()


def test_put_makes_an_avatar_once(client):
    first = client.put(f"{AVATARS}/carol")
    again = client.put(f"{AVATARS}/carol")
    assert (first.status_code, first.get_json(), again.status_code, again.get_json()) == (
        201, {"id": "carol"}, 200, {"id": "carol"})
    assert client.put(f"{AVATARS}/default").status_code == 200


# -- each avatar on its own -----------------------------------------------------------------------------------
def test_two_avatars_animate_independently(client, app, fake_engine):
    client.post(AVATARS, json={"id": "alice"})
    alice = avatar(app, "alice")
    for engine in (fake_engine, alice):
        engine.load_animator_settings({"blink_probability": 0.0, "sway_macro_strength": 0.0,
                                       "sway_micro_strength": 0.0})
    assert client.post(f"{AVATARS}/alice/set_emotion", json={"emotion_name": "joy"}).get_data(as_text=True) \
        == "emotion set to joy"
    assert client.get(f"{AVATARS}/alice/start_talking").get_data(as_text=True) == "talking started"
    assert (alice.animator.emotion, alice.animator.talking) == ("joy", True)
    assert (fake_engine.animator.emotion, fake_engine.animator.talking) == ("neutral", False)

    client.get(f"{AVATARS}/alice/stop_talking")

    answer = client.post(f"{AVATARS}/alice/lipsync", data=SPEECH, content_type="audio/wav")
    sent = time.monotonic()
    assert answer.status_code == 200 and answer.get_json()["duration_s"] == pytest.approx(2.0, abs=0.02)
    time.sleep(max(0.0, sent + 0.8 - time.monotonic()))  # inside the vowel
    assert mouth(alice) > 0.5 and mouth(fake_engine) < 0.05
    stats = client.get(f"{AVATARS}/alice/stats").get_json()
    assert (stats["emotion"], stats["lipsync_tracks"]) == ("joy", 1)
    assert client.get("/api/talkinghead/stats").get_json()["lipsync_tracks"] == 0

    client.post("/api/talkinghead/set_emotion", json={"emotion_name": "anger"})  # the old route: the default one
    assert (fake_engine.animator.emotion, alice.animator.emotion) == ("anger", "joy")

    templates = {"joy": {"mouth_aaa_index": 1.0}}
    assert client.post(f"{AVATARS}/alice/load_emotion_templates", json=templates).get_data(as_text=True) == "OK"
    assert client.get(f"{AVATARS}/alice/emotions").get_json()["joy"] == {"mouth_aaa_index": 1.0}
    assert client.get("/api/talkinghead/emotions").get_json()["joy"] != {"mouth_aaa_index": 1.0}
    assert client.post(f"{AVATARS}/alice/load_animator_settings", json={"target_fps": 10}).status_code == 200
    assert (alice.animator.settings.target_fps, fake_engine.animator.settings.target_fps) == (10, 25)
    still = client.post(f"{AVATARS}/alice/render", json={"emotion": "joy"})
    assert still.status_code == 200 and still.mimetype == "image/png"


def test_unloading_or_deleting_one_leaves_the_other_running_and_streaming(app, fake_engine, live_server_factory):
    server = live_server_factory(app)
    requests.put(f"{server.url}{AVATARS}/alice", timeout=10).raise_for_status()
    feeds = {name: requests.get(f"{server.url}{path}/result_feed", stream=True, timeout=10)
             for name, path in (("default", "/api/talkinghead"), ("alice", f"{AVATARS}/alice"))}
    readers = {name: stream.PartReader(feed.iter_content(8192)) for name, feed in feeds.items()}
    for reader in readers.values():
        assert len(reader.read(2)) == 2
    alice = avatar(app, "alice")
    assert (alice.viewers.count, fake_engine.viewers.count) == (1, 1)

    assert requests.get(f"{server.url}{AVATARS}/alice/unload", timeout=10).text == "animation paused"
    assert requests.get(f"{server.url}{AVATARS}/alice/stats", timeout=10).json()["state"] == "paused"
    assert requests.get(f"{server.url}/api/talkinghead/stats", timeout=10).json()["state"] == "running"
    before = fake_engine.renderer.frames_rendered
    assert len(readers["default"].read(5)) == 5 and fake_engine.renderer.frames_rendered > before

    assert requests.delete(f"{server.url}{AVATARS}/alice", timeout=10).json() == {"id": "alice", "deleted": True}
    leftover = readers["alice"].read(100)  # the stream ends (a keep-alive part or two may come first)
    assert len(leftover) < 100
    before = fake_engine.renderer.frames_rendered
    assert len(readers["default"].read(5)) == 5 and fake_engine.renderer.frames_rendered > before
    assert requests.get(f"{server.url}{AVATARS}/alice/result_feed", timeout=10).status_code == 404
    for feed in feeds.values():
        feed.close()


def test_deleting_avatars_brings_the_threads_back_to_the_baseline(app, live_server_factory):
    server = live_server_factory(app)
    time.sleep(0.2)
    baseline = {t.name for t in threading.enumerate()}, threading.active_count()
    feeds = []
    for name in ("alice", "bob"):
        requests.post(f"{server.url}{AVATARS}", json={"id": name}, timeout=10).raise_for_status()
        feed = requests.get(f"{server.url}{AVATARS}/{name}/result_feed", stream=True, timeout=10)
        stream.PartReader(feed.iter_content(8192)).read(1)
        feeds.append(feed)
    assert threading.active_count() > baseline[1]
    for name in ("alice", "bob"):
        requests.delete(f"{server.url}{AVATARS}/{name}", timeout=10).raise_for_status()
    for feed in feeds:
        feed.close()
    wait_until(lambda: threading.active_count() <= baseline[1])
    assert {t.name for t in threading.enumerate()} <= baseline[0]


def test_a_deleted_avatar_is_freed(client, app):
    client.post(AVATARS, json={"id": "alice"})
    client.get(f"{AVATARS}/alice/stats")
    gone = weakref.ref(avatar(app, "alice"))
    client.delete(f"{AVATARS}/alice")
    gc.collect()
    assert gone() is None, "something still holds the deleted avatar (and its frames, caches, poser image)"


# -- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, route", [
    ("post", "load"), ("get", "unload"), ("get", "start_talking"), ("get", "stop_talking"), ("post", "lipsync"),
    ("post", "set_emotion"), ("post", "load_emotion_templates"), ("post", "load_animator_settings"),
    ("get", "result_feed"), ("post", "render"), ("get", "emotions"), ("get", "stats"), ("get", "mocap"),
    ("post", "mocap")])
def test_an_unknown_avatar_is_a_404_on_each_of_its_routes(client, method, route):
    response = getattr(client, method)(f"{AVATARS}/nobody/{route}")
    assert response.status_code == 404
    assert "no avatar 'nobody'" in response.get_json()["error"]


def test_bad_ids_duplicates_the_default_and_the_cap(client):
    for bad in ("Alice", "-x", "a" * 65, "a b", "é", ""):
        response = client.post(AVATARS, json={"id": bad})
        assert response.status_code == 400 and "bad avatar id" in response.get_json()["error"], bad
    assert client.put(f"{AVATARS}/Alice").status_code == 400
    assert client.post(AVATARS, json={"id": 7}).status_code == 400
    assert client.post(AVATARS, json={"name": "x"}).status_code == 400
    assert client.post(AVATARS, data="x", content_type="text/plain").status_code == 415
    assert client.post(AVATARS, data={"file": (io.BytesIO(b"not a png"), "x.png")}).status_code == 400

    assert client.post(AVATARS, json={"id": "alice"}).status_code == 201
    duplicate = client.post(AVATARS, json={"id": "alice"})
    assert duplicate.status_code == 409 and "exists" in duplicate.get_json()["error"]
    assert client.post(AVATARS, json={"id": "default"}).status_code == 409
    kept = client.delete(f"{AVATARS}/default")
    assert kept.status_code == 409 and "default" in kept.get_json()["error"]
    assert client.delete(f"{AVATARS}/nobody").status_code == 404

    assert client.post(AVATARS, json={"id": "bob"}).status_code == 201  # 3 of 3
    over = client.post(AVATARS, json={"id": "carol"})
    assert over.status_code == 429 and "at most 3 avatars" in over.get_json()["error"]
    assert client.put(f"{AVATARS}/carol").status_code == 429
    client.delete(f"{AVATARS}/bob")
    assert client.post(AVATARS, json={"id": "carol"}).status_code == 201


def test_the_cap_flag():
    from server import parse_args

    assert parse_args([]).talkinghead.max_avatars == 8
    assert parse_args(["--talkinghead-max-avatars", "2"]).talkinghead.max_avatars == 2
    with pytest.raises(SystemExit):
        parse_args(["--talkinghead-max-avatars", "0"])


# -- the real networks, shared -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_avatars_share_the_real_networks_and_each_streams_its_own_character(real_poser, character_rgba):
    from talkinghead.avatars import Avatars
    from talkinghead.engine import TalkingHead

    default = TalkingHead(real_poser.with_own_image(), smooth=True, seed=1)
    default.start(character_rgba)
    avatars = Avatars(default)
    try:
        other = character_rgba.copy()
        other[..., :3] = 255 - other[..., :3]  # a different picture on the same outline
        avatars.create("inverted", image=encode.png(other))
        inverted = avatars.get("inverted")
        assert inverted.poser.networks is default.poser.networks  # the very modules: no copy of the weights
        assert inverted.shared is default.shared
        frames = {}
        for name, engine in (("default", default), ("inverted", inverted)):
            with engine.viewers:
                seq = engine.slot.latest().seq
                wait_until(lambda: engine.slot.wait_newer(seq, 1.0).seq > seq + 3
                           and not engine.slot.latest().meta.get("placeholder"), timeout=120)
                frames[name] = engine.slot.latest().rgba
        def mean_colour(rgba):  # of the opaque pixels: the pose moves them, the colours stay
            return rgba[rgba[..., 3] == 255, :3].mean(axis=0)

        assert np.abs(mean_colour(frames["default"]) - mean_colour(character_rgba)).max() < 12
        assert np.abs(mean_colour(frames["inverted"]) - mean_colour(other)).max() < 12
        gone = weakref.ref(inverted)
        del inverted, engine
        avatars.delete("inverted")
        gc.collect()
        assert gone() is None, "the deleted avatar's keyframes, faces and image are still held"
    finally:
        avatars.close()
        default.close()
