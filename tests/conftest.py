"""Shared fixtures: the real poser (loaded once), a fast fake poser, and a live server on a free loopback port."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from talkinghead import weights


def pytest_report_header(config):
    missing = weights.missing_or_corrupt()
    return f"THA3 weights: {'OK' if not missing else 'missing ' + ', '.join(missing)} in {weights.DATA_DIR}"


@pytest.fixture(scope="session")
def require_weights():
    missing = weights.missing_or_corrupt()
    if missing:
        pytest.skip(f"THA3 weights missing ({', '.join(missing)}): run `python -m talkinghead.weights`")


@pytest.fixture(scope="session")
def character_rgba(require_weights) -> np.ndarray:
    from talkinghead.image import load_character

    return load_character(weights.DEFAULT_CHARACTER.read_bytes())


@pytest.fixture(scope="session")
def real_poser(character_rgba):
    """Our poser on the real separable_float weights, with lambda_00 set. Shared: don't change its image."""
    from talkinghead.tha3.poser import Poser

    poser = Poser.load(weights.MODELS_DIR, "separable_float", "cpu")
    poser.set_image(character_rgba)
    return poser


class FakePoser:
    """Stands in for THA3 where pixels don't matter: the frame is the character, brightened by the mouth
    morphs and shifted by head_x, so tests can still see that the pose reached the renderer."""

    last_timings = {"fake": 0.1}

    def __init__(self, delay: float = 0.0):
        self.image = np.zeros((512, 512, 4), np.uint8)
        self.delay = delay
        self.renders = 0

    def set_image(self, rgba):
        self.image = np.array(rgba, dtype=np.uint8)

    def render(self, pose):
        from talkinghead import pose as pose_mod

        if self.delay:
            time.sleep(self.delay)
        self.renders += 1
        frame = self.image.copy()
        mouth = float(np.sum(pose[pose_mod.INDEX["mouth_aaa_index"]:pose_mod.INDEX["mouth_ooo_index"] + 1]))
        frame[:, :, :3] = np.clip(frame[:, :, :3].astype(np.int16) + int(60 * mouth), 0, 255).astype(np.uint8)
        return np.roll(frame, int(20 * pose[pose_mod.INDEX["head_x_index"]]), axis=1)


@pytest.fixture
def fake_engine():
    """A running engine on a fake poser (fast), with a simple opaque-square character."""
    from talkinghead.engine import TalkingHead

    image = np.zeros((512, 512, 4), np.uint8)
    image[128:384, 128:384] = (200, 100, 50, 255)
    engine = TalkingHead(FakePoser(delay=0.005), description={"backend": "fake", "device": "cpu",
                                                              "model": "fake"}, seed=1)
    engine.start(image)
    yield engine
    engine.close()


CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


def start_chromium(*extra_flags: str, capabilities: dict | None = None):
    """Debian's headless Chromium, driven through its chromedriver (Selenium); the caller quits it."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, *extra_flags):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


class LiveServer:
    def __init__(self, app):
        from server import make_server

        # poll(): closing the server while its loop waits reports the closed socket instead of raising.
        self.server = make_server(app, host="127.0.0.1", port=0, threads=16, channel_timeout=10,
                                  asyncore_use_poll=True)
        self.port = self.server.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self):
        self.server.close()
        self.thread.join(timeout=5)


@pytest.fixture
def live_server_factory():
    servers = []

    def start(app) -> LiveServer:
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
