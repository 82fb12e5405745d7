"""Faults a user can meet: each start-up fault is one line and a non-zero exit; a render failure is logged
once and the renderer goes on; a full or read-only disk never damages what the user saved."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from server import Config, create_app
from talkinghead import weights
from talkinghead.renderer import Renderer

REPO = Path(__file__).resolve().parent.parent


def start_server(*args, cwd=REPO, timeout=120) -> tuple[int, str]:
    """Run server.py; its exit code and the last line of stderr (what the user reads)."""
    result = subprocess.run([sys.executable, str(REPO / "server.py"), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    return result.returncode, lines[-1] if lines else ""


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KB file system of its own (root with mount rights only), to fill up or make read-only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# -- start-up ---------------------------------------------------------------------------------------------
def test_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, line = start_server(f"--port={port}")
    assert code == 1
    assert line == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use (is another server "
                    "running on that port? stop it, or choose another with --port)")


def test_listen_without_secure_warns_before_anything_else():
    with socket.socket() as taken:  # the port in use ends the run right after the warning
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, str(REPO / "server.py"), "--listen", f"--port={port}"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
    first = result.stderr.splitlines()[0]
    assert first.startswith("warning: --listen without --secure: anyone who can reach this computer on port")


def test_read_only_data_folder_is_one_line_and_exit_1(small_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    code, line = start_server("--enable-modules=talkinghead", f"--user-data={small_tmpfs / 'user'}")
    assert code == 1
    assert line == (f"error: the data folder {small_tmpfs / 'user'} is not writable (Read-only file system); "
                    "make it writable, or choose another with --user-data DIR")


def test_data_folder_that_is_a_file_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "user").write_text("not a folder")
    code, line = start_server("--enable-modules=talkinghead", f"--user-data={tmp_path / 'user'}")
    assert code == 1 and line.startswith(f"error: the data folder {tmp_path / 'user'} is not writable (")


def test_api_key_that_cannot_be_written_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "api_key.txt").mkdir()  # even root cannot write a file over a folder
    code, line = start_server("--secure", cwd=tmp_path)
    assert code == 1
    assert line.startswith("error: --secure: cannot write the API key file") and "api_key.txt" in line


@pytest.mark.slow
def test_corrupt_weights_are_one_line_and_exit_1(tmp_path, require_weights):
    models = tmp_path / "separable_float"
    models.mkdir()
    for network in weights.NETWORKS:
        shutil.copy(weights.MODELS_DIR / "separable_float" / f"{network}.pt", models)
    editor = models / "editor.pt"
    editor.write_bytes(editor.read_bytes()[:1000])  # cut short, as by an interrupted copy
    code, line = start_server("--enable-modules=talkinghead", f"--talkinghead-models={tmp_path}")
    assert code == 1 and line.startswith(f"error: cannot read THA3 weight file {editor}")


@pytest.mark.slow
def test_missing_classification_model_is_one_line_and_exit_1(tmp_path):
    code, line = start_server("--enable-modules=classify", f"--classification-model={tmp_path / 'no-model'}")
    assert (code, line) == (1, f"error: classify: --classification-model {tmp_path / 'no-model'}: no such directory")


@pytest.mark.slow
def test_cuda_for_classify_without_a_gpu_is_one_line_and_exit_1():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, line = start_server("--enable-modules=classify", "--cuda")
    assert code == 1 and line.startswith("error: classify: --cuda was given but no CUDA device")


# -- while running ----------------------------------------------------------------------------------------
def test_render_failure_is_logged_once_and_the_renderer_goes_on(caplog):
    failing = threading.Event()

    def render(t):
        if failing.is_set():
            raise RuntimeError("injected failure")
        return np.zeros((4, 4, 4), np.uint8), {}

    renderer = Renderer(render, fps=lambda: 100)
    renderer.start()
    try:
        with caplog.at_level(logging.INFO, logger="talkinghead.renderer"):
            time.sleep(0.1)
            failing.set()
            time.sleep(0.3)  # ~30 frames fail
            assert renderer.failed_frames >= 10
            rendered = renderer.frames_rendered
            failing.clear()
            time.sleep(0.2)
    finally:
        renderer.close()
    assert renderer.frames_rendered > rendered + 5, "the renderer went on after the failures"
    failures = [r for r in caplog.records if "rendering a frame failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None, "one traceback, not one per frame"
    recovered = [r.getMessage() for r in caplog.records if "works again" in r.getMessage()]
    assert len(recovered) == 1 and f"after {renderer.failed_frames} failed frames" in recovered[0]
    assert renderer.last_error == "RuntimeError: injected failure"


def test_render_failure_in_the_engine_shows_in_stats_and_frames_follow(fake_engine):
    client = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine}).test_client()
    poser = fake_engine.poser
    real_render = poser.render
    poser.render = lambda pose: (_ for _ in ()).throw(MemoryError("injected"))
    time.sleep(0.3)
    stats = client.get("/api/talkinghead/stats").get_json()
    assert stats["last_error"] == "MemoryError: injected"
    before = fake_engine.renderer.frames_rendered
    poser.render = real_render
    time.sleep(0.3)
    assert fake_engine.renderer.frames_rendered > before and fake_engine.renderer._thread.is_alive()


def test_full_disk_while_saving_a_template_keeps_the_previous_file(fake_engine, small_tmpfs):
    client = create_app(Config(modules=["talkinghead"], user_data=str(small_tmpfs)),
                        engines={"talkinghead": fake_engine}).test_client()
    assert client.put("/api/talkinghead/templates/joy", json={"pose": {"mouth_aaa_index": 0.5}}).status_code == 200
    saved = (small_tmpfs / "emotions.json").read_bytes()
    with open(small_tmpfs / "filler", "wb", buffering=0) as filler:  # fill the disk
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass
    answer = client.put("/api/talkinghead/templates/sadness", json={"pose": {"eye_wink_left_index": 1.0}})
    assert answer.status_code == 500
    message = answer.get_json()["error"]
    assert "could not save the template of 'sadness'" in message and "No space left on device" in message
    assert (small_tmpfs / "emotions.json").read_bytes() == saved
    assert sorted(os.listdir(small_tmpfs)) == ["emotions.json", "filler"], "no temporary file left behind"
    assert "sadness" not in client.get("/api/talkinghead/templates").get_json()["saved"]


@pytest.fixture
def read_only_data_dir(tmp_path, require_weights):
    """A data folder that holds the weights and images (links to the real ones) and takes no file: a
    read-only bind mount of itself (root with mount rights only)."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("models", "images"):
        (data / name).symlink_to(weights.DATA_DIR / name)
    if subprocess.run(["mount", "--bind", "-o", "ro", str(data), str(data)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only bind mount here (needs root with mount rights)")
    yield data
    subprocess.run(["umount", "-l", str(data)], capture_output=True)


@pytest.mark.slow
def test_read_only_data_folder_with_user_data_elsewhere_is_one_line_and_exit_1(read_only_data_dir, tmp_path):
    """The weights load, then the backend cache cannot be written: one line, not a traceback."""
    result = subprocess.run([sys.executable, str(REPO / "server.py"), "--enable-modules=talkinghead",
                             f"--user-data={tmp_path / 'user'}", "--port=0"], cwd=REPO, capture_output=True,
                            text=True, timeout=300,
                            env={**os.environ, "TALKINGHEAD_DATA_DIR": str(read_only_data_dir)})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    # error: could not set up the openvino backend: OSError: [Errno 30] Read-only file system: '<data>/cache'
    assert line.startswith("error: ") and "Read-only file system" in line and str(read_only_data_dir / "cache") in line


@pytest.mark.parametrize("p", [5e-324, 1e-300, 1e-17])
def test_a_tiny_blink_probability_is_a_400_and_the_animation_goes_on(fake_engine, p):
    """Found by bench/fuzz_long.py: the geometric wait drawn from such a chance overflowed, and every frame
    after it failed (the stream froze on its last frame)."""
    client = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine}).test_client()
    answer = client.post("/api/talkinghead/load_animator_settings", json={"blink_probability": p})
    assert answer.status_code == 400 and "too small" in answer.get_json()["error"]
    frames = fake_engine.renderer.frames_rendered
    time.sleep(0.3)
    assert fake_engine.renderer.frames_rendered > frames and fake_engine.renderer.last_error is None


@pytest.mark.parametrize("path, body", [
    ("/api/talkinghead/load_animator_settings", '{"target_fps": 1%s}'),
    ("/api/talkinghead/render", '{"pose": {"head_x_index": 1%s}}'),
    ("/api/talkinghead/load_emotion_templates", '{"joy": {"mouth_aaa_index": 1%s}}'),
])
def test_a_number_beyond_float_range_is_a_400_with_a_short_message(fake_engine, path, body):
    """Found by the fuzzers: a JSON integer of hundreds of digits was a 500 (float conversion overflowed)."""
    client = create_app(Config(modules=["talkinghead"]), engines={"talkinghead": fake_engine}).test_client()
    answer = client.post(path, data=body % ("0" * 400), content_type="application/json")
    assert answer.status_code == 400
    assert len(answer.get_json()["error"]) < 300, "the message does not echo the whole number"
