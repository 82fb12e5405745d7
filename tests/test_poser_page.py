"""The manual poser: its API (parameters, templates, sprite zip, errors, --secure) and the page end to end in
headless Chromium against a running server (fake poser: fast, its pixels follow the pose)."""
from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from server import Config, create_app
from talkinghead import emotions, pose as pose_mod, weights
from talkinghead.user_templates import TemplateStore

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
KEY = "c" * 32


def make_app(engine, tmp_path, **config):
    return create_app(Config(modules=["talkinghead"], user_data=str(tmp_path / "user"), **config),
                      engines={"talkinghead": engine})


@pytest.fixture
def client(fake_engine, tmp_path):
    return make_app(fake_engine, tmp_path).test_client()


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGBA" and image.size == (512, 512)
    return np.asarray(image)


def assert_zip_equals_renders(data: bytes, render) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [f"{name}.png" for name in emotions.EMOTIONS]
        for name in emotions.EMOTIONS:
            assert np.array_equal(pixels(archive.read(f"{name}.png")), pixels(render(name))), name


# -- API ---------------------------------------------------------------------------------------------------
def test_pose_params_describe_every_parameter_once_with_its_range_section_and_pair(client):
    description = client.get("/api/talkinghead/pose_params").get_json()
    params = {p["name"]: p for p in description["params"]}
    assert list(params) == [n for s in description["sections"] for n in s["params"]]
    assert sorted(params) == sorted(pose_mod.NAMES)
    assert [s["id"] for s in description["sections"]] == ["eyebrow", "eye", "iris", "mouth", "head", "breathing"]
    for name, p in params.items():
        i = pose_mod.INDEX[name]
        assert (p["low"], p["high"]) == (pose_mod.LOW[i], pose_mod.HIGH[i])
        if p["pair"]:
            assert params[p["pair"]]["pair"] == name and {p["side"], params[p["pair"]]["side"]} == {"left", "right"}
    assert params["head_x_index"]["section"] == "head" and params["iris_rotation_x_index"]["section"] == "iris"


def test_saved_template_is_the_servers_and_survives_a_restart(fake_engine, tmp_path):
    answer = make_app(fake_engine, tmp_path).test_client().put(
        "/api/talkinghead/templates/joy", json={"pose": {"mouth_ooo_index": 0.5, "head_y_index": -0.25}})
    assert answer.status_code == 200 and answer.get_json()["persistent"] is True
    from talkinghead.engine import TalkingHead
    from conftest import FakePoser

    restarted = TalkingHead(FakePoser())
    client = make_app(restarted, tmp_path).test_client()
    assert client.get("/api/talkinghead/emotions").get_json()["joy"] == {"mouth_ooo_index": 0.5, "head_y_index": -0.25}
    sets = client.get("/api/talkinghead/templates").get_json()
    assert sets["saved"] == ["joy"] and sets["builtin"]["joy"] != sets["server"]["joy"]
    assert client.delete("/api/talkinghead/templates/joy").status_code == 200
    assert client.get("/api/talkinghead/emotions").get_json()["joy"] == sets["builtin"]["joy"]
    assert TemplateStore(tmp_path / "user").load() == {}


@pytest.mark.parametrize("name, body, message", [
    ("..%2F..%2Fetc%2Fpasswd", {"pose": {}}, "without path characters"),
    ("joy%5C..", {"pose": {}}, "without path characters"),
    ("a/b", {"pose": {}}, "without path characters"),
    ("happiness", {"pose": {}}, "unknown emotion 'happiness'"),
    ("joy", {"pose": {"mouth_wide": 1.0}}, "unknown pose parameter 'mouth_wide'"),
    ("joy", {"pose": {"head_x_index": 1.5}}, "out of range [-1, 1]"),
    ("joy", {"pose": {"mouth_aaa_index": "a lot"}}, "must be a number"),
    ("joy", {"mouth_aaa_index": 1.0}, 'send {"pose"'),
])
def test_bad_template_saves_are_400_with_a_message_and_change_nothing(client, name, body, message):
    before = client.get("/api/talkinghead/emotions").get_json()
    answer = client.put(f"/api/talkinghead/templates/{name}", json=body)
    assert answer.status_code == 400 and message in answer.get_json()["error"]
    assert client.get("/api/talkinghead/emotions").get_json() == before


def test_a_save_the_disk_refuses_is_an_error_and_changes_nothing(client, monkeypatch):
    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TemplateStore, "save", disk_full)
    before = client.get("/api/talkinghead/emotions").get_json()
    answer = client.put("/api/talkinghead/templates/joy", json={"pose": {"mouth_aaa_index": 0.1}})
    assert answer.status_code == 500 and "No space left on device" in answer.get_json()["error"]
    assert client.get("/api/talkinghead/emotions").get_json() == before


def test_sprite_zip_holds_each_emotion_as_its_exact_render(client):
    answer = client.get("/api/talkinghead/sprites.zip")
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert 'filename="sprites.zip"' in answer.headers["Content-Disposition"]
    assert_zip_equals_renders(answer.data, lambda name: client.post("/api/talkinghead/render",
                                                                    json={"emotion": name}).data)


def test_secure_server_serves_the_page_without_a_key_but_not_its_api(fake_engine, tmp_path):
    client = make_app(fake_engine, tmp_path, secure=True, api_key=KEY).test_client()
    for path in ("/talkinghead/poser", "/talkinghead/poser/", "/talkinghead/poser/poser.js",
                 "/talkinghead/poser/poser.css"):
        assert client.get(path).status_code == 200, path
    for path in ("/api/talkinghead/pose_params", "/api/talkinghead/templates", "/api/talkinghead/sprites.zip",
                 "/talkinghead/poserx"):
        assert client.get(path).status_code == 401, path
    assert client.get("/api/talkinghead/pose_params", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/talkinghead/poser/../../api/talkinghead/templates").status_code in (401, 404)


def test_manual_poser_opens_the_page_of_a_running_server(fake_engine, tmp_path, live_server_factory, monkeypatch):
    from talkinghead import manual_poser

    server = live_server_factory(make_app(fake_engine, tmp_path))
    opened = []
    monkeypatch.setattr(manual_poser.webbrowser, "open", opened.append)
    assert manual_poser.main(["--port", str(server.port)]) == 0
    assert opened == [f"http://127.0.0.1:{server.port}/talkinghead/poser"]
    assert manual_poser.probe("http://127.0.0.1:9") == "nothing"


def test_manual_poser_starts_a_talkinghead_only_server_as_a_program_when_none_answers(monkeypatch):
    """Nothing on the port: server.py runs as its own process with the passed-on flags (no import of the
    server into talkinghead/), and its exit code is the launcher's."""
    from network import free_port
    from talkinghead import manual_poser

    port, started, waited = free_port(), [], []
    monkeypatch.setattr(manual_poser, "run_server", lambda flags: started.append(flags) or 3)
    monkeypatch.setattr(manual_poser, "open_when_ready", lambda *args: waited.append(args))
    assert manual_poser.main(["--port", str(port), "--no-browser", "--talkinghead-gpu"]) == 3
    assert started == [["--talkinghead-gpu", "--enable-modules=talkinghead", f"--port={port}"]]
    monkeypatch.undo()
    assert manual_poser.SERVER_PROGRAM == Path(__file__).resolve().parents[1] / "server.py"
    assert manual_poser.run_server(["--help"]) == 0  # the real program: prints its usage and exits


@pytest.mark.slow
def test_sprites_equal_render_on_the_real_poser(real_poser, tmp_path):
    """THA3's exact renders, in the zip and from /render, are the same pixels (three emotions: ~6 renders; the
    28 and the route are checked on the fake poser above)."""
    from talkinghead import sprites
    from talkinghead.engine import TalkingHead

    engine = TalkingHead(real_poser)  # not started: render_still only, the shared poser keeps its image
    client = make_app(engine, tmp_path).test_client()
    chosen = ("joy", "anger", "surprise")
    data = b"".join(sprites.stream_zip({name: engine.emotion_pose(name) for name in chosen}, engine.render_still,
                                       order=chosen))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in chosen:
            render = client.post("/api/talkinghead/render", json={"emotion": name}).data
            assert np.array_equal(pixels(archive.read(f"{name}.png")), pixels(render)), name


# -- the page in Chromium ------------------------------------------------------------------------------------
from test_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: E402,F401  (the same headless Chromium)

needs_chromium = pytest.mark.needs_tool("chromium", "chromedriver", hint="apt-get install chromium chromium-driver")


@pytest.fixture
def downloads(browser, tmp_path) -> Path:
    """Where the browser saves what the page downloads."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    return folder


def wait_for_download(folder: Path, name: str, timeout: float = 30) -> Path:
    path, deadline = folder / name, time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder holds {[p.name for p in folder.iterdir()]}")


PREVIEW_SAMPLE = """
const img = document.getElementById('preview');
if (!img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas'); c.width = c.height = 512;
const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
return Array.from(ctx.getImageData(0, 0, 512, 512).data.filter((_, i) => i % 4099 === 0));
"""


@pytest.mark.slow  # ~10 s: a browser, three downloads
@needs_chromium
def test_pose_save_download_load_and_export_in_the_browser(browser, downloads, fake_engine, tmp_path,
                                                           live_server_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server = live_server_factory(make_app(fake_engine, tmp_path, secure=True, api_key=KEY))
    api = lambda method, path, **kw: requests.request(  # noqa: E731
        method, f"{server.url}/api/talkinghead/{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30, **kw)
    find = lambda element_id: browser.find_element(By.ID, element_id)  # noqa: E731
    wait = WebDriverWait(browser, 20)
    message = lambda: find("message").text  # noqa: E731

    # Without the key the page says what is missing; with it (typed once, kept) it builds the sliders.
    browser.set_window_size(1400, 1000)
    browser.get(f"{server.url}/talkinghead/poser")
    wait.until(lambda d: "API key" in message())
    find("api-key").send_keys(KEY + Keys.TAB)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")) == 45
    assert browser.execute_script("return localStorage.getItem('talkinghead.apiKey')") == KEY
    wait.until(lambda d: d.execute_script(PREVIEW_SAMPLE))
    neutral = browser.execute_script(PREVIEW_SAMPLE)

    # The keyboard moves a slider; the exact preview follows (the fake poser brightens with the mouth).
    mouth = find("r-mouth_aaa_index")
    mouth.send_keys(*[Keys.ARROW_RIGHT] * 10)
    wait.until(lambda d: d.execute_script(PREVIEW_SAMPLE) not in (None, neutral))
    assert float(browser.find_element(By.CSS_SELECTOR, "[aria-label='mouth_aaa_index value']")
                 .get_attribute("value")) == pytest.approx(0.1)
    assert "exact render:" in find("render-time").text
    # A linked pair moves together.
    find("r-eyebrow_happy_left_index").send_keys(Keys.END)
    assert browser.find_element(By.CSS_SELECTOR, "[aria-label='eyebrow_happy_right_index value']") \
        .get_attribute("value") == "1"
    find("undo").click()
    assert browser.find_element(By.CSS_SELECTOR, "[aria-label='eyebrow_happy_right_index value']") \
        .get_attribute("value") == "0"

    # Save as joy: the server's templates show it.
    Select(find("save-emotion")).select_by_value("joy")
    find("save-template").click()
    wait.until(lambda d: "Saved" in message())
    assert api("GET", "emotions").json()["joy"] == {"mouth_aaa_index": pytest.approx(0.1)}

    # _emotions.json downloads with every emotion and every morph, and loads back.
    find("download-emotions").click()
    downloaded = json.loads(wait_for_download(downloads, "_emotions.json").read_text())
    assert sorted(downloaded) == sorted(emotions.EMOTIONS)
    assert all(sorted(t) == sorted(pose_mod.NAMES) for t in downloaded.values())
    assert downloaded["joy"]["mouth_aaa_index"] == 0.1
    api("POST", "load_emotion_templates", json={"joy": {"mouth_ooo_index": 1.0}})  # something else meanwhile
    find("load-emotions").send_keys(str(downloads / "_emotions.json"))
    wait.until(lambda d: "Loaded _emotions.json" in message())
    assert api("GET", "emotions").json() == {
        name: {k: pytest.approx(v) for k, v in t.items() if v} for name, t in downloaded.items()}

    # A bad character upload shows the server's message and keeps the character; a good one is used.
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    find("load-character").send_keys(str(not_an_image))
    wait.until(lambda d: "not a readable image" in message() and "current character is kept" in message())
    character = tmp_path / "character.png"
    if weights.DEFAULT_CHARACTER.is_file():
        shutil.copy(weights.DEFAULT_CHARACTER, character)
    else:
        Image.new("RGBA", (512, 512), (90, 140, 200, 255)).save(character)
    find("load-character").send_keys(str(character))
    wait.until(lambda d: "Loaded character.png" in message())

    # Export: 28 sprites, with progress, equal to /render of each emotion.
    find("export-sprites").click()
    sprites = wait_for_download(downloads, "sprites.zip", timeout=60)
    assert find("export-state").text.startswith("28 sprites")
    assert_zip_equals_renders(sprites.read_bytes(), lambda name: api("POST", "render", json={"emotion": name}).content)

    Select(find("start-emotion")).select_by_value("joy")
    find("show-stream").click()
    wait.until(lambda d: d.execute_script("return document.getElementById('stream').naturalWidth") == 512)
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(0.5)  # the preview of joy
    browser.execute_script("window.scrollTo(0, 0); document.querySelector('.stage').scrollTop = 0")
    browser.save_screenshot(str(ARTIFACTS / "poser.png"))
    browser.set_window_size(390, 844)  # a phone
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.save_screenshot(str(ARTIFACTS / "poser-phone.png"))

    # The saved template survives a restart of the server (same user data folder, new engine).
    browser.get("about:blank")  # closes the stream
    server.close()
    from talkinghead.engine import TalkingHead
    from conftest import FakePoser

    restarted = live_server_factory(make_app(TalkingHead(FakePoser()), tmp_path, secure=True, api_key=KEY))
    answer = requests.get(f"{restarted.url}/api/talkinghead/emotions", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.json()["joy"] == {"mouth_aaa_index": pytest.approx(0.1)}
