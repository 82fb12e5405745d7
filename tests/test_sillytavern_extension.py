"""The SillyTavern extension (clients/sillytavern/) in the real SillyTavern web app, in two versions.

The end-to-end test runs the same steps on SillyTavern 1.19.0 (the npm package `sillytavern`, installed by
`scripts/setup.sh --test` into .cache/sillytavern-1.19.0/, run in its "global mode" as the `sillytavern`
command runs it, data in the user's data folder) and on 1.12.6 (the vendored source, unpacked into
.cache/, `npm install` once; its folder from $TALKINGHEAD_SILLYTAVERN_TARBALL or shared/vendor/ beside the
checkout). It installs the extension with scripts/install-sillytavern-extension.sh, starts SillyTavern's
own Node server and ours (a real process, real weights), a small OpenAI-compatible TTS endpoint speaking
with espeak-ng, and drives the app in headless Chromium: moving frames in the panel, the emotion of a
character message, TTS lip-sync (the mouth opens while the clip plays; the track at the clip's playback
rate; the clip sent once), the browser's "System" voice (a stand-in voice: headless Chromium has none)
moving the mouth without #tts_audio, the server paused while the tab is hidden, one notification when it
stops. A screenshot per version is saved as test-artifacts/sillytavern-<version>.png.

The install script's choice of folder is tested on its own, on fake SillyTavern folders (fast).
"""
from __future__ import annotations

import contextlib
import http.server
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import require, sillytavern_tarball

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
TARBALL_NAME = "sillytavern-1.12.6.tar.gz"
ST_1126 = CACHE / "sillytavern-1.12.6"
ST_1190 = CACHE / "sillytavern-1.19.0" / "node_modules" / "sillytavern"  # scripts/setup.sh --test installs it
VERSIONS = ("1.19.0", "1.12.6")
INSTALL = REPO / "scripts" / "install-sillytavern-extension.sh"
ARTIFACTS = REPO / "test-artifacts"
EXTENSION_PATH = "/scripts/extensions/third-party/talkinghead-extras/"



def vendored_tarball() -> Path:
    """The vendored 1.12.6 source: $TALKINGHEAD_SILLYTAVERN_TARBALL or shared/vendor/ beside this checkout
    (conftest.sillytavern_tarball), else beside the main checkout, for a git worktree elsewhere."""
    if os.environ.get("TALKINGHEAD_SILLYTAVERN_TARBALL"):
        return sillytavern_tarball()
    candidates = [sillytavern_tarball()]
    try:
        common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        if common:
            candidates.append(Path(common).parent.parent / "shared" / "vendor" / TARBALL_NAME)
    except (OSError, subprocess.SubprocessError):
        pass
    return next((c for c in candidates if c.is_file()), candidates[0])


VENDORED = vendored_tarball()
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
NODE = shutil.which("node")
NPM = shutil.which("npm")
ESPEAK = shutil.which("espeak-ng")


# -- the install script (fast) -------------------------------------------------------------------------------

def fake_sillytavern(root: Path, version: str, *, third_party: bool = False, config: str | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "sillytavern", "version": version}, indent=4))
    if third_party:
        (root / "public" / "scripts" / "extensions" / "third-party").mkdir(parents=True)
    if config is not None:
        (root / "config.yaml").write_text(config)
    return root


def install(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_install_script_puts_the_extension_in_the_users_data_folder(tmp_path):
    st = fake_sillytavern(tmp_path / "st", "1.12.6")
    result = install(st)
    assert result.returncode == 0, result.stderr
    target = st / "data" / "default-user" / "extensions" / "talkinghead-extras"
    assert json.loads((target / "manifest.json").read_text())["requires"] == []
    assert (target / "index.js").is_file() and (target / "settings.html").is_file()
    assert str(target) in result.stdout and "installed" in result.stdout
    again = install(st)
    assert again.returncode == 0 and "updated" in again.stdout


def test_install_script_reads_data_root_and_handles_newer_and_older_versions(tmp_path):
    data = tmp_path / "elsewhere"
    st = fake_sillytavern(tmp_path / "st", "1.12.6", config=f'# comment\ndataRoot: "{data}"\nport: 8000\n')
    assert install("--user", "alice", st).returncode == 0
    assert (data / "alice" / "extensions" / "talkinghead-extras" / "manifest.json").is_file()

    relative = fake_sillytavern(tmp_path / "rel", "1.12.6", config="dataRoot: ./mydata # user data\n")
    assert install(relative).returncode == 0
    assert (relative / "mydata" / "default-user" / "extensions" / "talkinghead-extras").is_dir()

    newer = fake_sillytavern(tmp_path / "new", "1.13.2", third_party=True)
    result = install("--global", newer)
    assert result.returncode == 0, result.stderr
    assert (newer / "public" / "scripts" / "extensions" / "third-party" / "talkinghead-extras" / "index.js").is_file()
    assert "for all users" in result.stdout
    assert install("--global", st).returncode != 0  # 1.12.6 has no all-users folder: says so

    older = fake_sillytavern(tmp_path / "old", "1.11.8", third_party=True)
    assert install(older).returncode == 0
    assert (older / "public" / "scripts" / "extensions" / "third-party" / "talkinghead-extras").is_dir()

    not_st = tmp_path / "nothing"
    not_st.mkdir()
    result = install(not_st)
    assert result.returncode != 0 and "does not look like SillyTavern" in result.stderr


def test_install_script_finds_the_data_root_of_each_layout(tmp_path):
    """A git checkout, an npm install (its `sillytavern` command keeps data in the user's data folder),
    $SILLYTAVERN_DATAROOT, --data-root DIR, and no folder named at all: it says what it found."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}

    def run(*args, **extra):
        return subprocess.run(["bash", str(INSTALL), *map(str, args)], capture_output=True, text=True, timeout=60,
                              env={**env, **extra})

    def installed(data_root: Path, user: str = "default-user") -> bool:
        return (data_root / user / "extensions" / "talkinghead-extras" / "manifest.json").is_file()

    checkout = fake_sillytavern(tmp_path / "SillyTavern", "1.19.0")
    (checkout / ".git").mkdir()
    result = run(checkout)
    assert result.returncode == 0, result.stderr
    assert installed(checkout / "data") and "a git checkout" in result.stdout
    assert f"data root: {checkout / 'data'}" in result.stdout, result.stdout

    npm = fake_sillytavern(tmp_path / "prefix" / "lib" / "node_modules" / "sillytavern", "1.19.0")
    result = run(npm)
    user_data = home / ".local" / "share" / "SillyTavern" / "data"
    assert result.returncode == 0 and installed(user_data), result.stdout + result.stderr
    assert "an npm install" in result.stdout and f"data root: {user_data}" in result.stdout, result.stdout
    xdg = tmp_path / "xdg"
    assert run(npm, XDG_DATA_HOME=str(xdg)).returncode == 0 and installed(xdg / "SillyTavern" / "data")
    # Started with `node server.js` in the package folder: its own data/ has the users.
    (npm / "data" / "default-user").mkdir(parents=True)
    assert run(npm).returncode == 0 and installed(npm / "data")

    # No folder named: the user data folder of the npm install, when there is one.
    result = run("--user", "bob")
    assert result.returncode == 0 and installed(user_data, "bob"), result.stdout + result.stderr

    env_root = tmp_path / "from-env"
    result = run(checkout, SILLYTAVERN_DATAROOT=str(env_root))
    assert result.returncode == 0 and installed(env_root) and "SILLYTAVERN_DATAROOT" in result.stdout, result.stdout
    assert run(SILLYTAVERN_DATAROOT=str(tmp_path / "env-only")).returncode == 0 and installed(tmp_path / "env-only")

    explicit = tmp_path / "explicit"
    result = run("--data-root", explicit)
    assert result.returncode == 0 and installed(explicit) and "--data-root" in result.stdout, result.stdout
    result = run("--data-root", tmp_path / "wins", checkout, SILLYTAVERN_DATAROOT=str(env_root))
    assert installed(tmp_path / "wins"), result.stdout  # --data-root first

    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path / "nobody")})
    assert result.returncode != 0 and "no SillyTavern found" in result.stderr, result.stderr


# -- end to end ----------------------------------------------------------------------------------------------

from network import free_port, stop_process  # noqa: E402  (tests/network.py)


def http_json(url: str, body: dict | None = None, timeout: float = 60):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        return json.loads(raw) if response.headers.get_content_type() == "application/json" else raw


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def prepare_sillytavern(version: str) -> Path:
    """SillyTavern's folder: 1.19.0 from the npm cache setup made; 1.12.6 unpacked into .cache and
    `npm install`ed once."""
    if version == "1.19.0":
        return ST_1190
    if not (ST_1126 / "package.json").is_file():
        CACHE.mkdir(exist_ok=True)
        partial = CACHE / f"sillytavern-unpacking-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        with tarfile.open(VENDORED) as tar:
            tar.extractall(partial, filter="data")
        (partial / "sillytavern-1.12.6").rename(ST_1126)
        shutil.rmtree(partial, ignore_errors=True)
    if not (ST_1126 / "node_modules" / "express").is_dir():
        result = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--omit=dev"], cwd=ST_1126,
                                capture_output=True, text=True, timeout=900)
        require(result.returncode == 0,
                f"npm install of SillyTavern failed (registry unreachable?): {result.stderr[-500:]}")
    return ST_1126


def sillytavern_config(st_dir: Path, data_root: Path, port: int) -> str:
    """SillyTavern's own default config.yaml with the test's data root; no whitelist, no browser launch, no
    extension auto-update (keys as each version spells them)."""
    text = (st_dir / "default" / "config.yaml").read_text()
    found = 0
    for key, value in {"dataRoot": json.dumps(str(data_root)), "port": str(port), "listen": "false",
                       "whitelistMode": "false", "autorun": "false", "enableExtensionsAutoUpdate": "false",
                       "skipContentCheck": "false"}.items():
        text, count = re.subn(rf"^{key}:.*$", f"{key}: {value}", text, flags=re.M)
        found += count
    for block, key in (("browserLaunch", "enabled"), ("extensions", "autoUpdate")):  # 1.13+
        text = re.sub(rf"^({block}:\n(?:[ \t]*#.*\n)*[ \t]+{key}:).*$", r"\1 false", text, flags=re.M)
    assert found >= 5, "SillyTavern's default config.yaml changed"
    return text


def user_settings(st_dir: Path, api_url: str, tts_url: str) -> dict:
    """default-user/settings.json: SillyTavern's defaults, connected to our server as its Extras API, its
    built-in talkinghead toggle off, TTS through the OpenAI-compatible provider to the test's endpoint (and
    the browser's "System" voices set up for the test's stand-in voice)."""
    settings = json.loads((st_dir / "default" / "content" / "settings.json").read_text())
    settings["firstRun"] = False
    ext = settings["extension_settings"]
    ext.update(apiUrl=api_url, apiKey="", autoConnect=True)
    ext["expressions"] = {"showDefault": False, "api": 1, "talkinghead": False}  # 1: classify on Extras
    ext["tts"] = {
        "voiceMap": "", "ttsEnabled": False, "enabled": True, "currentProvider": "OpenAI Compatible",
        "auto_generation": False, "narrate_user": False, "playback_rate": 1,
        "OpenAI Compatible": {"provider_endpoint": tts_url, "model": "tts-1", "speed": 1,
                              "available_voices": ["alloy"],
                              "voiceMap": {"Seraphina": "alloy", "[Default Voice]": "alloy"}},
        "System": {"rate": 1, "pitch": 1, "voiceMap": {"Seraphina": "Test Voice", "[Default Voice]": "Test Voice"}},
        # 1.17+: streams the WAV from the endpoint and plays it through Web Audio (an AudioWorklet).
        "TTS WebUI": {"provider_endpoint": tts_url, "streaming": True, "model": "chatterbox",
                      "available_voices": ["alloy"], "voiceMap": {"Seraphina": "alloy", "[Default Voice]": "alloy"}},
    }
    ext["talkinghead_extras"] = {"enabled": True, "size": 320, "left": 1062, "top": 60}
    return settings


def speech_wav(text: str) -> bytes:
    """espeak-ng's speech; without espeak-ng, a voice-like buzz in syllables (the mouth follows loudness)."""
    if ESPEAK:
        return subprocess.run([ESPEAK, "-s", "150", "--stdout", text], capture_output=True, check=True,
                              timeout=30).stdout
    rate, seconds = 22050, max(1.5, 0.07 * len(text))
    samples = bytearray()
    for i in range(int(rate * seconds)):
        t = i / rate
        envelope = max(0.0, math.sin(math.pi * 4 * t)) ** 2
        value = sum(math.sin(2 * math.pi * 130 * k * t) / k for k in range(1, 12)) * envelope
        samples += struct.pack("<h", int(8000 * value))
    out = io.BytesIO()
    import wave
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(bytes(samples))
    return out.getvalue()


class TtsEndpoint:
    """POST /v1/audio/speech (OpenAI's TTS API; TTS WebUI's too) → WAV speech of `input`. Open to the
    browser (CORS): TTS WebUI fetches from the page."""

    def __init__(self):
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def end_headers(self):
                self.send_header("Access-Control-Allow-Origin", "*")
                super().end_headers()

            def do_OPTIONS(self):
                self.send_response(204)
                self.send_header("Access-Control-Allow-Methods", "POST, GET")
                self.send_header("Access-Control-Allow-Headers", "Content-Type, Cache-Control")
                self.end_headers()

            def do_GET(self):
                self.send_error(404)  # TTS WebUI's voice list: it falls back to its settings' voices

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path != "/v1/audio/speech":
                    self.send_error(404)
                    return
                owner.requests.append(body.get("input", ""))
                audio = speech_wav(body.get("input", "") or "hello")
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(audio)))
                self.end_headers()
                self.wfile.write(audio)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/audio/speech"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def start_process(args, cwd: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    return subprocess.Popen(args, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# In the page: the feed <img>'s pixels through a canvas (the feed sends CORS headers), and a sampler of the
# mouth box: its mean absolute difference from a reference frame's, at the best shift within ±SHIFT px (the
# head moves a little as the character breathes), every 80 ms.
PAGE_HELPERS = """
window.__th = window.__th || {};
const SHIFT = 6;
__th.pixels = function (box) {
  const img = document.getElementById('talkinghead_extras_feed');
  if (!img || !img.naturalWidth) return null;
  const canvas = __th.canvas || (__th.canvas = document.createElement('canvas'));
  canvas.width = 512; canvas.height = 512;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.clearRect(0, 0, 512, 512);
  ctx.drawImage(img, 0, 0, 512, 512);
  const [x0, y0, x1, y1] = box || [0, 0, 512, 512];
  return ctx.getImageData(x0, y0, x1 - x0, y1 - y0).data;
};
__th.signature = function () {
  const d = __th.pixels();
  if (!d) return null;
  const out = [];
  for (let i = 0; i < d.length; i += 4 * 101) out.push(d[i], d[i + 1], d[i + 2], d[i + 3]);
  return out;
};
__th.aligned = function (d, ref, w, h) {
  const rw = w + 2 * SHIFT;
  let best = Infinity;
  for (let dy = 0; dy <= 2 * SHIFT; dy++) {
    for (let dx = 0; dx <= 2 * SHIFT; dx++) {
      let sum = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = 4 * (y * w + x), j = 4 * ((y + dy) * rw + x + dx);
          sum += Math.abs(d[i] - ref[j]) + Math.abs(d[i + 1] - ref[j + 1]) + Math.abs(d[i + 2] - ref[j + 2]);
        }
      }
      best = Math.min(best, sum / (w * h * 3));
    }
  }
  return best;
};
__th.reference = function (box) {
  const [x0, y0, x1, y1] = box;
  __th.mouthRef = __th.pixels([x0 - SHIFT, y0 - SHIFT, x1 + SHIFT, y1 + SHIFT]);
};
// Resolves once the box has stayed the same (aligned difference under 0.5) for quietMs; that is the reference.
__th.settle = async function (box, quietMs, timeoutMs) {
  const [x0, y0, x1, y1] = box;
  const start = performance.now();
  __th.reference(box);
  let since = performance.now();
  while (performance.now() - start < timeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, 80));
    if (__th.aligned(__th.pixels(box), __th.mouthRef, x1 - x0, y1 - y0) > 0.5) {
      __th.reference(box);
      since = performance.now();
    } else if (performance.now() - since > quietMs) {
      return true;
    }
  }
  return false;
};
__th.startMouth = function (box) {
  const [x0, y0, x1, y1] = box;
  __th.mouth = [];
  clearInterval(__th.mouthTimer);
  __th.mouthTimer = setInterval(() => {
    const d = __th.pixels(box);
    if (d) __th.mouth.push(__th.aligned(d, __th.mouthRef, x1 - x0, y1 - y0));
  }, 80);
};
__th.stopMouth = function () { clearInterval(__th.mouthTimer); return __th.mouth; };
"""


def mouth_box(api: str) -> list[int]:
    """Where the loaded character's mouth is: the pixels an open mouth changes, padded a little."""
    from PIL import Image
    import numpy as np

    closed = np.asarray(Image.open(io.BytesIO(http_json(api + "/api/talkinghead/render", {"pose": {}}))).convert("RGBA"))
    opened = np.asarray(Image.open(io.BytesIO(
        http_json(api + "/api/talkinghead/render", {"pose": {"mouth_aaa_index": 1.0}}))).convert("RGBA"))
    diff = np.abs(closed.astype(int) - opened.astype(int)).max(axis=2)
    cy, cx = np.unravel_index(np.argmax(diff), diff.shape)  # inside the open mouth
    ys, xs = np.nonzero(diff > 30)
    near = (np.abs(ys - cy) < 24) & (np.abs(xs - cx) < 24)  # not the faint outline changes elsewhere
    ys, xs = ys[near], xs[near]
    assert len(xs) > 10, "an open mouth changes no pixels in the render"
    return [max(0, int(xs.min()) - 4), max(0, int(ys.min()) - 4), min(512, int(xs.max()) + 5),
            min(512, int(ys.max()) + 5)]


# The browser's "System" TTS speaks through the OS (speech-dispatcher); headless Chromium has no voice. This
# stand-in (installed before SillyTavern's scripts run) speaks for ~60 ms a character and says so through
# speechSynthesis.speaking and the utterance's events, as a real voice does; nothing plays through #tts_audio.
FAKE_VOICE = """
(() => {
  const voice = {name: 'Test Voice', voiceURI: 'Test Voice', lang: 'en-US', localService: true, default: true};
  const synth = {
    speaking: false, pending: false, paused: false, spoken: [], onvoiceschanged: null,
    getVoices: () => [voice],
    speak(utterance) {
      synth.spoken.push(utterance.text);
      synth.speaking = true;
      setTimeout(() => utterance.dispatchEvent(new Event('start')), 10);
      clearTimeout(synth.timer);
      synth.timer = setTimeout(() => {
        synth.speaking = false;
        utterance.dispatchEvent(new Event('end'));
      }, Math.max(1500, 60 * String(utterance.text).length));
    },
    cancel() { synth.speaking = false; clearTimeout(synth.timer); },
    pause() {}, resume() {}, addEventListener() {}, removeEventListener() {},
  };
  Object.defineProperty(window, 'speechSynthesis', {configurable: true, get: () => synth});
  // An utterance takes this voice (a real one only takes a SpeechSynthesisVoice).
  Object.defineProperty(SpeechSynthesisUtterance.prototype, 'voice', {
    configurable: true, get() { return this.__voice ?? null; }, set(value) { this.__voice = value; }});
})();
"""


@pytest.fixture
def chrome():
    from conftest import start_chromium

    driver = start_chromium("--window-size=1400,900", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                            capabilities={"goog:loggingPrefs": {"browser": "ALL"}})
    driver.set_script_timeout(40)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_VOICE})
    yield driver
    driver.quit()


def missing_tools(version: str) -> str | None:
    if version == "1.12.6" and not VENDORED.is_file():
        return (f"the vendored SillyTavern source is missing ({VENDORED}; set TALKINGHEAD_SILLYTAVERN_TARBALL "
                "to its path)")
    if version == "1.19.0" and not (ST_1190.parents[1] / ".installed").is_file():
        return f"SillyTavern 1.19.0 is not installed in {ST_1190.parents[1]} (scripts/setup.sh --test installs it)"
    if not (NODE and NPM):
        return "needs Node.js and npm (apt-get install nodejs npm)"
    if not (CHROMIUM and CHROMEDRIVER):
        return "needs Debian chromium and chromium-driver (apt-get install chromium chromium-driver)"
    return None


def start_sillytavern(version: str, st_dir: Path, tmp_path: Path, port: int, log: Path) -> tuple[subprocess.Popen, Path, dict]:
    """1.19.0 as the `sillytavern` command runs it (global mode: config and data in the user's data folder,
    here under a temporary XDG_DATA_HOME); 1.12.6 as `node server.js` in its folder (config.yaml there)."""
    env = {**os.environ}
    args = ["--port", str(port), "--listen", "false", "--whitelist", "false",
            "--requestProxyBypass", "localhost", "127.0.0.1"]
    if version == "1.19.0":
        env.update(XDG_DATA_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path / "home"))
        (tmp_path / "home").mkdir()
        app = tmp_path / "xdg" / "SillyTavern"
        data_root = app / "data"
        app.mkdir(parents=True)
        (app / "config.yaml").write_text(sillytavern_config(st_dir, data_root, port))
        command = [NODE, str(st_dir / "src" / "server-global.js"), *args, "--browserLaunchEnabled", "false"]
    else:
        data_root = tmp_path / "st-data"
        (st_dir / "config.yaml").write_text(sillytavern_config(st_dir, data_root, port))
        command = [NODE, "server.js", *args, "--autorun", "false"]
    return (lambda: subprocess.Popen(command, cwd=st_dir, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)), data_root, env


class SillyTavernApp:
    """One end-to-end setting: SillyTavern `version` (its own Node server) with our extension installed by our
    script, our server (a real process, real weights, `server_args` added), the test's TTS endpoint, and the
    app in `chrome`. Use through sillytavern_app(): start() waits for both servers, open() for the app with the
    extension connected to ours."""

    def __init__(self, version: str, tmp_path: Path, chrome, server_args=()):
        require(not missing_tools(version), str(missing_tools(version)))  # the setup provides them
        self.version, self.chrome, self.server_args = version, chrome, list(server_args)
        self.started = time.monotonic()
        self.st_dir = prepare_sillytavern(version)
        self.api_port, st_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.st_url = f"http://127.0.0.1:{st_port}"
        self.tts = TtsEndpoint()
        self.our_log, self.st_log = tmp_path / "server.log", tmp_path / "sillytavern.log"
        self.launch, self.data_root, self.env = start_sillytavern(version, self.st_dir, tmp_path, st_port, self.st_log)
        self.user = self.data_root / "default-user"
        self.user.mkdir(parents=True)
        (self.user / "settings.json").write_text(json.dumps(user_settings(self.st_dir, self.api, self.tts.url), indent=4))
        # Installed with our script, as a user would: it finds the data root itself.
        self.install = subprocess.run(["bash", str(INSTALL), str(self.st_dir)], capture_output=True, text=True,
                                      timeout=60, env=self.env)
        self.ours = self.st = None

    def start(self):
        """Both servers up; our server's /api/modules in self.modules."""
        self.ours = start_process([sys.executable, "server.py", "--enable-modules=classify,talkinghead",
                                   "--port", str(self.api_port), *self.server_args], REPO, self.our_log)
        self.st = self.launch()
        wait_for(lambda: urllib.request.urlopen(self.st_url + "/", timeout=5).status == 200, 120,
                 f"SillyTavern to answer on {self.st_url}:\n{tail(self.st_log)}")
        self.modules = wait_for(lambda: http_json(self.api + "/api/modules"), 300,
                                f"our server on {self.api}:\n{tail(self.our_log)}", interval=1)
        print(f"servers up after {time.monotonic() - self.started:.0f} s")

    def open(self):
        """The app loaded in the browser, the extension connected to our server; PAGE_HELPERS in the page."""
        chrome = self.chrome
        chrome.get(self.st_url + "/")
        wait_for(lambda: chrome.execute_script("return !!(window.TalkingheadExtras && "
                                               "document.querySelector('.th-extras-settings'))"), 90,
                 "SillyTavern to load the extension")
        wait_for(lambda: chrome.execute_script("return !document.getElementById('loader') && "
                                               "!document.getElementById('preloader')"), 120,
                 "SillyTavern to finish loading")
        print(f"SillyTavern ready after {time.monotonic() - self.started:.0f} s")
        chrome.execute_script(PAGE_HELPERS)
        wait_for(lambda: chrome.execute_script("return window.TalkingheadExtras.connection.up"), 30,
                 "the extension to connect to our server")

    def history(self) -> list[dict]:
        """The extension's last requests to our server."""
        return self.chrome.execute_script("return window.TalkingheadExtras.server.history")

    def chat(self, text: str):
        """Type into the chat box and send, as a user would (slash commands too)."""
        from selenium.webdriver.common.by import By

        send = self.chrome.find_element(By.ID, "send_textarea")
        send.clear()
        send.send_keys(text)
        # The send button is hidden while no chat API is connected (none is here); its handler runs
        # the slash commands all the same. A busy page may miss a click (the text stays in the box, its
        # command's help open): click again then.
        for _ in range(3):
            self.chrome.execute_script("$('#send_but').trigger('click')")
            try:
                wait_for(lambda: send.get_attribute("value") == "", 5, "the chat box to be sent")
                return
            except AssertionError:
                pass
        raise AssertionError(f"SillyTavern did not send {text!r}")

    def failed(self, name: str):
        ARTIFACTS.mkdir(exist_ok=True)
        failure = ARTIFACTS / f"{name}-failure.png"
        self.chrome.save_screenshot(str(failure))
        print(f"failure screenshot: {failure}\n--- our server ---\n{tail(self.our_log)}"
              f"\n--- SillyTavern ---\n{tail(self.st_log)}")

    def close(self):
        for process in (self.st, self.ours):
            if process is not None:
                stop_process(process, timeout=10)
        self.tts.close()


@contextlib.contextmanager
def sillytavern_app(version: str, tmp_path: Path, chrome, name: str | None = None, server_args=()):
    """A SillyTavernApp, started; on a failure a screenshot (test-artifacts/<name>-failure.png) and both
    servers' logs; everything stopped at the end."""
    app = SillyTavernApp(version, tmp_path, chrome, server_args)
    try:
        app.start()
        yield app
    except BaseException:
        app.failed(name or f"sillytavern-{version}")
        raise
    finally:
        app.close()


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_extension_animates_the_character_in_real_sillytavern(version, tmp_path, require_weights, chrome):
    from selenium.webdriver.common.by import By
    from talkinghead import weights

    with sillytavern_app(version, tmp_path, chrome) as app:
        api, api_port, user, data_root, ours = app.api, app.api_port, app.user, app.data_root, app.ours
        started, tts, history, chat = app.started, app.tts, app.history, app.chat
        shot = ARTIFACTS / f"sillytavern-{version}.png"
        # 1. Installed with our script, as a user would: it finds the data root itself (1.19.0: the npm
        # install's user data folder; 1.12.6: config.yaml's dataRoot) and says so.
        result = app.install
        assert result.returncode == 0, result.stderr
        assert f"data root: {data_root}" in result.stdout, result.stdout
        assert (user / "extensions" / "talkinghead-extras" / "manifest.json").is_file(), result.stdout
        print(result.stdout)

        # Seraphina (one of SillyTavern's default characters) gets a talkinghead.png in her sprite folder (found
        # by file name: no expression label, so no classifier can pick it) and animator settings beside her
        # expression sprites: no sway, no blinking, slow breathing: near the mouth, little but the mouth moves.
        sprites = wait_for(lambda: (user / "characters" / "Seraphina" / "joy.png").is_file()
                           and user / "characters" / "Seraphina", 60, "SillyTavern's default content")
        shutil.copy(weights.DEFAULT_CHARACTER, sprites / "talkinghead.png")
        (sprites / "_animator.json").write_text(json.dumps(
            {"sway_macro_strength": 0.0, "sway_micro_strength": 0.0, "blink_probability": 0.0,
             "breathing_cycle_duration": 60.0}))
        (sprites / "_emotions.json").write_text("{}")
        modules = app.modules
        assert modules["modules"] == ["classify", "talkinghead"] and modules["server"] == "talkinghead-extras"
        box = mouth_box(api)  # Seraphina's talkinghead.png is the server's default character: same mouth

        app.open()
        events = chrome.execute_script("return window.TalkingheadExtras.speech.events")
        assert events == (version != "1.12.6"), events  # TTS job events since 1.17

        # A character chat: Seraphina, opened as a user would (/go in the chat box).
        wait_for(lambda: chrome.execute_script("return SillyTavern.getContext().characters.length > 0"), 30,
                 "the character list")
        chat("/go Seraphina")
        wait_for(lambda: chrome.execute_script(
            "return window.TalkingheadExtras.state.character?.name === 'Seraphina'"), 60,
            "the extension to load Seraphina")

        # 2. The panel shows moving frames from result_feed.
        wait_for(lambda: chrome.execute_script(
            "const i = document.getElementById('talkinghead_extras_feed'); return i && i.naturalWidth === 512 "
            "&& i.src.includes('/api/talkinghead/result_feed') && i.getBoundingClientRect().width > 100"), 30,
            "the panel's <img> to show the stream")
        first = wait_for(lambda: chrome.execute_script("return __th.signature()"), 10, "a frame")
        wait_for(lambda: chrome.execute_script("return __th.signature()") != first, 15, "the next frame to differ")
        stats = http_json(api + "/api/talkinghead/stats")
        assert stats["viewers"] >= 1 and stats["state"] == "running", stats
        paths = [(h["method"], h["path"], h["status"]) for h in history()]
        assert ("POST", "/api/talkinghead/load", 200) in paths, paths
        assert ("POST", "/api/talkinghead/load_animator_settings", 200) in paths, paths

        # 3. A character message sets the emotion to its classification: first with Character Expressions
        # showing Seraphina's sprites (the extension follows its label), then classifying on its own.
        chat("/sendas name=Seraphina I am so happy today!")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["emotion"] == "joy", 30, "emotion joy")
        label = chrome.execute_script("return document.querySelector('#expression-holder img.expression')"
                                      "?.getAttribute('data-expression')")
        print(f"Character Expressions' data-expression: {label!r}")
        chrome.execute_script("$('#th_extras_emotion_source').val('classify').trigger('change')")
        assert chrome.execute_script("return window.TalkingheadExtras.settings().emotionSource") == "classify"
        before = len(history())
        chat("/sendas name=Seraphina I am so angry at you! How dare you!")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["emotion"] == "anger", 30, "emotion anger")
        wait_for(lambda: any(h["path"] == "/api/classify" and h["status"] == 200 for h in history()[before:]), 10,
                 "the extension's own classify")

        # 4. TTS through SillyTavern's own extension (/speak; auto-generation plays through the same <audio>):
        # lip-sync reaches our server and the mouth, at rest before, opens while the clip plays.
        # Faces come slowly on a busy CPU (SillyTavern, Chromium and our server share it): wait until the
        # emotion's new face has arrived and the mouth is at rest.
        # (SillyTavern's Character Expressions classifies the message on our server too, a little later: a
        # face that changes while the mouth should be still is waited out.)
        for _ in range(3):
            assert chrome.execute_async_script(
                "__th.settle(arguments[0], 2000, 30000).then(arguments[arguments.length - 1])", box), \
                "the mouth did not come to rest"
            chrome.execute_script("__th.startMouth(arguments[0])", box)
            time.sleep(2.0)
            still = chrome.execute_script("return __th.stopMouth()")
            if still and max(still) < 1.5:
                break
        tracks = http_json(api + "/api/talkinghead/stats")["lipsync_tracks"]
        chrome.execute_script("__th.startMouth(arguments[0])", box)
        chat("/speak Hello there! Far away, across the sea, a bright balloon floated over the old harbour.")
        wait_for(lambda: chrome.execute_script(
            "const a = document.getElementById('tts_audio'); return a && !a.paused && a.currentTime > 0.5"), 30,
            "the /speak clip to play")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["lipsync_tracks"] > tracks, 10,
                 "the clip's lip-sync track")
        time.sleep(1.5)
        ARTIFACTS.mkdir(exist_ok=True)
        chrome.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        wait_for(lambda: chrome.execute_script(
            "const a = document.getElementById('tts_audio'); return a.paused || a.ended"), 30, "the clip to end")
        speaking = chrome.execute_script("return __th.stopMouth()")
        assert len(still) > 5 and len(speaking) > 10, (len(still), len(speaking))
        print(f"mouth box {box}: still max {max(still):.1f}, while speaking max {max(speaking):.1f}")
        # A wide-open mouth changes the box by ~4.6 on average (slow breathing drifts it by under ~1 in 2 s).
        recent = [(h["method"], h["path"], h["status"]) for h in history()[-12:]]
        assert max(speaking) > max(still) + 1.5, (still, speaking, recent)
        lipsyncs = [h for h in history() if h["path"] == "/api/talkinghead/lipsync"]
        assert len(lipsyncs) == 1 and lipsyncs[0]["status"] == 200, lipsyncs  # one clip, sent once
        assert float(lipsyncs[0]["query"]["rate"]) == 1.0, lipsyncs
        sent = chrome.execute_script("return window.TalkingheadExtras.speech.sent")
        # 1.19: the bytes from TTS_AUDIO_READY's Blob; 1.12.6: read from #tts_audio.
        assert [x["source"] for x in sent] == ["event" if events else "element"], sent
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["talking"] is False, 10, "talking to stop")

        # 5. The playback-rate setting (TTS settings → Audio Playback Speed): the clip plays 1.5× as fast, and
        # so does its track.
        chrome.execute_script("$('#playback_rate').val(1.5).trigger('input')")
        chat("/speak A second sentence, spoken faster than the first one was.")
        wait_for(lambda: len([h for h in history() if h["path"] == "/api/talkinghead/lipsync"]) == 2, 30,
                 "the faster clip's lip-sync request")
        rate = chrome.execute_script("return document.getElementById('tts_audio').playbackRate")
        lipsyncs = [h for h in history() if h["path"] == "/api/talkinghead/lipsync"]
        assert rate == 1.5 and float(lipsyncs[1]["query"]["rate"]) == 1.5, (rate, lipsyncs)
        wait_for(lambda: chrome.execute_script(
            "const a = document.getElementById('tts_audio'); return a.paused || a.ended"), 30, "the clip to end")
        assert len(tts.requests) == 2, tts.requests
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["talking"] is False, 10, "talking to stop")

        # 6. A provider that plays without #tts_audio: the browser's "System" voices. The mouth talks while it
        # speaks (1.19: from TTS_JOB_STARTED to TTS_JOB_COMPLETE; 1.12.6: while speechSynthesis speaks),
        # and stops after; no lip-sync request (there is no clip to follow).
        chrome.execute_script("$('#tts_provider').val('System').trigger('change')")
        wait_for(lambda: chrome.execute_script("return SillyTavern.getContext().extensionSettings.tts"
                                               ".currentProvider === 'System'"), 10, "the System provider")
        time.sleep(1.0)
        before = len(history())
        completed = chrome.execute_script("return window.TalkingheadExtras.speech.completed")
        chat("/speak This one the browser speaks itself, with no audio element at all.")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["talking"] is True, 15,
                 "talking while the System voice speaks")
        wait_for(lambda: chrome.execute_script("return speechSynthesis.spoken.length === 1"), 5, "the voice to speak")
        wait_for(lambda: not chrome.execute_script("return speechSynthesis.speaking"), 20, "the voice to finish")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["talking"] is False, 10,
                 "talking to stop after the System voice")
        calls = [h["path"] for h in history()[before:]]
        assert "/api/talkinghead/start_talking" in calls and "/api/talkinghead/lipsync" not in calls, calls
        if events:
            assert chrome.execute_script("return window.TalkingheadExtras.speech.completed") == completed + 1
            # 1.17+: a provider streaming through Web Audio (TTS WebUI, streaming on): TTS_AUDIO_READY carries
            # no clip; the mouth talks from TTS_JOB_STARTED for about as long as the text takes to say.
            chrome.execute_script("$('#tts_provider').val('TTS WebUI').trigger('change')")
            wait_for(lambda: chrome.execute_script("return SillyTavern.getContext().extensionSettings.tts"
                                                   ".currentProvider === 'TTS WebUI'"), 10, "the TTS WebUI provider")
            time.sleep(1.0)
            before, asked = len(history()), len(tts.requests)
            completed = chrome.execute_script("return window.TalkingheadExtras.speech.completed")
            chat("/speak And this one streams, played through Web Audio as it arrives.")
            wait_for(lambda: len(tts.requests) > asked, 15, "TTS WebUI to ask the endpoint")
            wait_for(lambda: http_json(api + "/api/talkinghead/stats")["talking"] is True, 15,
                     "talking while TTS WebUI plays")
            wait_for(lambda: http_json(api + "/api/talkinghead/stats")["talking"] is False, 20,
                     "talking to stop after TTS WebUI")
            calls = [h["path"] for h in history()[before:]]
            assert "/api/talkinghead/start_talking" in calls and "/api/talkinghead/lipsync" not in calls, calls
            # The job played and completed (a failed one ends talking by a timeout, and emits no TTS_JOB_COMPLETE).
            assert chrome.execute_script("return window.TalkingheadExtras.speech.completed") == completed + 1
        chrome.execute_script("$('#tts_provider').val('OpenAI Compatible').trigger('change')")

        # 7. Visual Novel mode (group chats) shows a copy of #expression-holder per member, made with jQuery's
        # clone(): with the avatar in the sprite's place, the copy holds our <img>, a second stream. It is
        # dropped at once; one stream stays.
        chrome.execute_script("$('#th_extras_replace_sprite').prop('checked', true).trigger('change')")
        wait_for(lambda: chrome.execute_script(
            "return !!document.querySelector('#expression-holder #talkinghead_extras_feed')"), 10,
            "the avatar in the sprite's place")
        chrome.execute_script("""
            const copy = $('#expression-holder').clone();
            copy.attr('id', 'expression-test.png').attr('data-avatar', 'test.png');
            $('#visual-novel-wrapper').append(copy);""")
        time.sleep(1.0)
        feeds = chrome.execute_script("return [...document.querySelectorAll('img')].filter("
                                      "i => (i.getAttribute('src') || '').includes('/api/talkinghead/result_feed')).length")
        assert feeds == 1, feeds
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["viewers"] == 1, 15, "one stream")
        chrome.execute_script("$('#visual-novel-wrapper').empty();"
                              "$('#th_extras_replace_sprite').prop('checked', false).trigger('change')")
        wait_for(lambda: chrome.execute_script(
            "return !!document.querySelector('#talkinghead_extras_panel #talkinghead_extras_feed')"), 10,
            "the avatar back in its panel")

        # 8. The tab hidden: the server pauses and the stream closes; shown again: it runs again.
        chrome.execute_script("""
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            document.dispatchEvent(new Event('visibilitychange'));""")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["state"] == "paused", 15, "the server to pause")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["viewers"] == 0, 15, "the stream to close")
        chrome.execute_script("""
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
            document.dispatchEvent(new Event('visibilitychange'));""")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["state"] == "running", 15, "the server to resume")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["viewers"] >= 1, 15, "the stream to reopen")

        # /th off hides the panel and pauses the server; /th on brings both back. Test connection reports.
        chat("/th off")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["state"] == "paused", 15, "/th off to pause")
        assert not chrome.find_element(By.ID, "talkinghead_extras_panel").is_displayed()
        chat("/th on")
        wait_for(lambda: http_json(api + "/api/talkinghead/stats")["state"] == "running", 15, "/th on to resume")
        wait_for(lambda: chrome.find_element(By.ID, "talkinghead_extras_panel").is_displayed(), 10, "the panel")
        chrome.execute_script("$('#th_extras_test').trigger('click')")
        report = wait_for(lambda: "Animation:" in (text := chrome.execute_script(
            "return document.getElementById('th_extras_status').textContent")) and text, 15, "the test report")
        assert "Modules: classify, talkinghead" in report and "Animation: running" in report, report
        assert "Version: talkinghead-extras " in report, report

        # Quiet in normal use: nothing from the extension in the console at warning level or above.
        logs = chrome.get_log("browser")
        ours_logged = [e for e in logs if e["level"] in ("SEVERE", "WARNING")
                       and (EXTENSION_PATH in e["message"] or "[talkinghead]" in e["message"]
                            or f":{api_port}/" in e["message"])]
        assert not ours_logged, ours_logged

        # 9. The server goes away: one notification that says what to check, the panel says it too, retries
        # in the background; SillyTavern goes on.
        stop_process(ours, timeout=10)
        toasts = "return [...document.querySelectorAll('#toast-container .toast')].map(t => t.textContent)"
        wait_for(lambda: any("not reachable" in t for t in chrome.execute_script(toasts)), 30, "the toast")
        time.sleep(6)
        down = [t for t in chrome.execute_script(toasts) if "not reachable" in t]
        assert len(down) == 1 and "--enable-modules=classify,talkinghead" in down[0], down
        assert chrome.execute_script("return window.TalkingheadExtras.connection.state") in ("down", "checking")
        assert "not reachable" in chrome.find_element(By.CSS_SELECTOR, "#talkinghead_extras_panel .th-extras-status").text
        chat("/echo still fine")
        wait_for(lambda: "still fine" in chrome.execute_script(toasts + ".join(' ')"), 10, "SillyTavern to go on")

        # 10. Another program answers on the URL (SillyTavern-Extras' /api/modules: no "server" field): the
        # extension says so plainly instead of using it.
        other = OtherProgram()
        try:
            chrome.execute_script("$('#th_extras_url').val(arguments[0]).trigger('change')", other.url)
            wait_for(lambda: any("Another program answers" in t for t in chrome.execute_script(toasts)), 20,
                     "the other-program toast")
            assert chrome.execute_script("return window.TalkingheadExtras.connection.lastError?.kind") == "foreign"
        finally:
            other.close()
        print(f"end-to-end test on SillyTavern {version} took {time.monotonic() - started:.0f} s")


class OtherProgram:
    """Another program on the extension's URL: answers /api/modules as SillyTavern-Extras does."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"modules": ["talkinghead"]}).encode()
                self.send_response(200 if self.path == "/api/modules" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
