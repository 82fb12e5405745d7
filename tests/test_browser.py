"""The client's view in a real browser: a page on another origin (as SillyTavern is) calls the API with fetch
(CORS preflights, Bearer key) and shows the result feed in an <img>, which must show moving 512×512 frames."""
from __future__ import annotations

import http.server
import shutil
import threading

import pytest

from server import Config, create_app

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# Skips without them; fails under CI=true (conftest.need_tool).
pytestmark = pytest.mark.needs_tool("chromium", "chromedriver",
                                    hint="apt-get install chromium chromium-driver")
KEY = "b" * 32

PAGE = """<!doctype html><html><body style="background:#123456">
<img id="avatar" crossorigin="anonymous" width="512" height="512">
<canvas id="c" width="512" height="512"></canvas>
<script>
const api = "%(api)s";
const headers = {"Authorization": "Bearer %(key)s", "Content-Type": "application/json",
                 "Bypass-Tunnel-Reminder": "bypass"};
window.results = {};
async function run() {
  const modules = await fetch(api + "/api/modules", {headers});
  window.results.modules = await modules.json();
  const bad = await fetch(api + "/api/modules", {headers: {"Authorization": "Bearer nope"}});
  window.results.badStatus = bad.status;
  window.results.badBody = await bad.json();
  for (const [path, body] of [["load_emotion_templates", {}], ["load_animator_settings", {}],
                              ["set_emotion", {"emotion_name": "joy"}]]) {
    const r = await fetch(api + "/api/talkinghead/" + path, {method: "POST", headers, body: JSON.stringify(body)});
    window.results[path] = r.status + " " + await r.text();
  }
  const talk = await fetch(api + "/api/talkinghead/start_talking", {headers});
  window.results.talk = await talk.text();
  document.getElementById("avatar").src = api + "/api/talkinghead/result_feed";
  window.results.done = true;
}
function sample() {
  const img = document.getElementById("avatar"), ctx = document.getElementById("c").getContext("2d");
  ctx.clearRect(0, 0, 512, 512);
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(0, 0, 512, 512).data.filter((_, i) => i %% 997 === 0));
}
run().catch(e => { window.results.error = String(e); });
</script></body></html>"""


@pytest.fixture
def browser():
    from conftest import start_chromium

    driver = start_chromium()
    yield driver
    driver.quit()


def serve_page(html: str):
    """A static page on its own loopback port: another origin than the API server."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_cross_origin_page_drives_the_avatar_and_shows_moving_frames(browser, fake_engine, live_server_factory):
    from selenium.webdriver.support.ui import WebDriverWait

    app = create_app(Config(modules=["talkinghead"], secure=True, api_key=KEY), engines={"talkinghead": fake_engine})
    api = live_server_factory(app)
    page = serve_page(PAGE % {"api": api.url, "key": KEY})
    try:
        browser.get(f"http://127.0.0.1:{page.server_address[1]}/")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return window.results.done || "
                                                                    "window.results.error"))
        results = browser.execute_script("return window.results")
        assert "error" not in results, results
        assert results["modules"]["modules"] == ["talkinghead"], results["modules"]
        assert results["badStatus"] == 401 and results["badBody"] == {"error": "401: Invalid API key"}
        assert results["set_emotion"] == "200 emotion set to joy"
        assert results["load_emotion_templates"] == "200 OK" and results["talk"] == "talking started"
        WebDriverWait(browser, 20).until(
            lambda d: d.execute_script("return document.getElementById('avatar').naturalWidth") == 512)
        first = browser.execute_script("return sample()")
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return sample()") != first)
        assert fake_engine.viewers.count >= 1
    finally:
        page.shutdown()


FEED_PAGE = """<!doctype html><html><body>
<img id="feed" src="/feed" width="64" height="64"><canvas id="c" width="64" height="64"></canvas>
<script>
function pixel() {
  const img = document.getElementById("feed"), ctx = document.getElementById("c").getContext("2d");
  if (!img.naturalWidth) return null;
  ctx.drawImage(img, 0, 0);
  return Array.from(ctx.getImageData(32, 32, 1, 1).data);
}
</script></body></html>"""


def serve_feed(slot):
    """The page and result_feed's framing (talkinghead.stream) of a slot the test publishes to, same origin."""
    from talkinghead import stream

    page = FEED_PAGE.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            if self.path != "/feed":
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            self.send_header("Content-Type", stream.MIMETYPE)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for chunk in stream.frames(slot, stream.Viewers(), keepalive=30.0):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_img_shows_each_streamed_frame_before_the_next_is_sent(browser):
    """Chromium shows a multipart part only once the next part's head has come: the stream sends it right
    after each frame, so a frame shows while the next one does not exist yet (a paused or still character)."""
    import numpy as np
    from selenium.webdriver.support.ui import WebDriverWait

    from talkinghead.renderer import FrameSlot

    slot = FrameSlot()
    solid = lambda rgb: np.tile(np.array([*rgb, 255], np.uint8), (64, 64, 1))  # noqa: E731
    slot.publish(solid((255, 0, 0)), 0.0)
    httpd = serve_feed(slot)
    try:
        browser.get(f"http://127.0.0.1:{httpd.server_address[1]}/")
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return pixel()") == [255, 0, 0, 255])
        slot.publish(solid((0, 255, 0)), 1.0)  # only now the second frame exists
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return pixel()") == [0, 255, 0, 255])
    finally:
        httpd.shutdown()
