"""Keyframes kept on disk per character: a restart starts warm with exact frames, files for another image or
model and damaged files are refused (one log line, never a crash or a wrong picture), and the budgets hold."""
from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pytest

from talkinghead import pose as P
from talkinghead.smooth import KeyframeDisk, SmoothSource, quantize_face
from talkinghead.smooth.disk import character_key

SIZE = 512


def outputs(value: float):
    """A keyframe's arrays: the sampling offset, colour change and alpha, half precision."""
    rng = np.random.default_rng(int(value * 100))
    offset = rng.uniform(-20, 20, (SIZE, SIZE, 2)).astype(np.float16)
    color = rng.uniform(-1, 1, (SIZE, SIZE, 4)).astype(np.float16)
    alpha = rng.uniform(0, 1, (SIZE, SIZE, 4)).astype(np.float16)
    return offset, color, alpha


def pose(head_y: float) -> np.ndarray:
    p = np.zeros(45, np.float32)
    p[P.INDEX["head_y_index"]] = head_y
    return p


def test_a_saved_keyframe_comes_back_as_it_was(tmp_path):
    disk = KeyframeDisk(tmp_path, model="m")
    saved = outputs(0.3)
    disk.save("abc", 1, pose(0.3), saved)
    (loaded_pose, loaded), = list(disk.load("abc"))
    assert np.array_equal(loaded_pose, pose(0.3))
    assert all(np.array_equal(a, b) for a, b in zip(loaded, saved))
    assert list(disk.load("other")) == []


def test_files_for_another_model_or_character_and_damaged_files_are_refused_with_one_line(tmp_path, caplog):
    disk = KeyframeDisk(tmp_path, model="separable_float/openvino")
    disk.save("abc", 1, pose(0.1), outputs(0.1))
    disk.save("abc", 2, pose(0.2), outputs(0.2))
    other_model = KeyframeDisk(tmp_path / "elsewhere", model="separable_half/torch")
    other_model.save("abc", 3, pose(0.3), outputs(0.3))
    foreign = next((tmp_path / "elsewhere" / "abc").glob("*.npz"))
    shutil.copy(foreign, tmp_path / "abc" / "9-1.npz")  # written for another model
    disk.save("xyz", 4, pose(0.4), outputs(0.4))
    shutil.copy(next((tmp_path / "xyz").glob("*.npz")), tmp_path / "abc" / "8-1.npz")  # another character's
    damaged = sorted((tmp_path / "abc").glob("1-*.npz"))[0]
    damaged.write_bytes(damaged.read_bytes()[:5000])  # cut short
    (tmp_path / "abc" / "7-1.npz").write_bytes(b"not a keyframe at all")
    with caplog.at_level(logging.WARNING, logger="talkinghead.smooth.disk"):
        kept = list(disk.load("abc"))
    assert [float(p[P.INDEX["head_y_index"]]) for p, _ in kept] == [pytest.approx(0.2)]
    lines = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(lines) == 1 and "ignored 4 keyframe file(s)" in lines[0].getMessage()
    assert sorted(f.name.split("-")[0] for f in (tmp_path / "abc").glob("*.npz")) == ["2"]  # the bad ones removed
    assert disk.refused == 4


def test_a_character_keeps_its_newest_keyframes_within_its_budget(tmp_path):
    one = 5 * 2 ** 20 + 4096  # a keyframe's file: ~5 MB
    disk = KeyframeDisk(tmp_path, model="m", max_bytes_per_character=3 * one)
    for k in range(5):
        disk.save("abc", k, pose(k / 10), outputs(k / 10))
        time.sleep(0.01)  # distinct modification times
    kept = sorted(round(float(p[P.INDEX["head_y_index"]]), 1) for p, _ in disk.load("abc"))
    assert kept == [0.2, 0.3, 0.4]


def test_the_least_recently_used_characters_go_first_when_all_together_are_too_big(tmp_path):
    one = 5 * 2 ** 20 + 4096
    disk = KeyframeDisk(tmp_path, model="m", max_bytes=2 * one)
    disk.save("old", 1, pose(0.1), outputs(0.1))
    time.sleep(0.01)
    disk.save("used", 2, pose(0.2), outputs(0.2))
    time.sleep(0.01)
    list(disk.load("old"))  # used again: now the most recent but for the next one
    os.utime(tmp_path / "used", (time.time() - 100, time.time() - 100))
    disk.save("new", 3, pose(0.3), outputs(0.3))
    assert sorted(d.name for d in tmp_path.iterdir()) == ["new", "old"]


def test_the_key_depends_on_the_pixels_and_the_model():
    a = np.zeros((512, 512, 4), np.uint8)
    b = a.copy()
    b[100, 100, 3] = 1
    assert character_key(a, "m") == character_key(a.copy(), "m")
    assert len({character_key(a, "m"), character_key(b, "m"), character_key(a, "n")}) == 3


def test_a_restart_starts_with_the_characters_keyframes_and_exact_frames(real_poser, tmp_path):
    disk = KeyframeDisk(tmp_path, model="test")
    key = disk.key(real_poser.rgba)
    shown = pose(0.5)
    shown[P.INDEX["mouth_aaa_index"]] = 0.5
    shown = quantize_face(shown)

    def source():
        s = SmoothSource(real_poser, lambda t: shown, lambda: 0, lambda: 25.0, lambda: 100.0, disk=disk)
        s.image_changed()
        return s

    first = source()
    first.frame_at(100.0)  # rendered now (no workers), and kept on disk
    assert first.keyframes_rendered == 1 and len(list((tmp_path / key).glob("*.npz"))) == 1

    again = source()  # as after a restart: the same image and model
    deadline = time.monotonic() + 30
    while again.keyframes_loaded == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    frame, meta = again.frame_at(100.0)
    assert again.keyframes_rendered == 0 and again.keyframes_loaded == 1 and meta["blend"] == [1.0]
    assert np.abs(frame.astype(int) - real_poser.render(shown).astype(int)).max() <= 1


def test_a_keyframe_evicted_from_memory_comes_back_from_disk_instead_of_being_rendered_again(real_poser, tmp_path):
    """Memory holds fewer keyframes than a character's sway needs; the disk holds them all. When the stream
    comes back near an evicted keyframe, the worker reads it back (~10 ms) instead of rendering it (~0.6 s)."""
    disk = KeyframeDisk(tmp_path, model="test")
    shown = {"pose": pose(0.0)}
    source = SmoothSource(real_poser, lambda t: shown["pose"], lambda: 0, lambda: 25.0, lambda: 100.0, disk=disk)
    source.image_changed()
    for head_y in (0.0, 0.8, -0.8):
        keyframe = source._make_keyframe(pose(head_y))
        source.keyframes.max_bytes = 2 * keyframe.nbytes  # memory for two
    assert source.keyframes_rendered == 3 and len(source.keyframes) == 2 and source.keyframes.evicted == 1

    source.scheduler.urgent_seen = source.animation.urgent()  # no command pending: the keyframe worker may work
    assert source.scheduler.keyframe_jobs()  # the resting pose at head_y 0 is not served from memory
    assert source.keyframes_rendered == 3 and source.keyframes_recalled == 1
    frame, meta = source.frame_at(100.0)
    assert meta["blend"] == [1.0]
    assert np.abs(frame.astype(int) - real_poser.render(shown["pose"]).astype(int)).max() <= 1
