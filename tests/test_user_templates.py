"""Saved emotion templates: kept across restarts, never lost on a failed write, and the server's set."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from talkinghead import emotions, pose as pose_mod
from talkinghead.user_templates import FILE_NAME, TemplateStore


def a_pose(**values) -> np.ndarray:
    return pose_mod.from_dict(values)


def test_saved_template_is_read_back_by_a_new_store(tmp_path):
    TemplateStore(tmp_path).save("joy", a_pose(mouth_aaa_index=0.5, head_x_index=-0.25))
    saved = TemplateStore(tmp_path).load()
    assert list(saved) == ["joy"]
    assert pose_mod.to_dict(saved["joy"], skip_zeros=True) == {"mouth_aaa_index": 0.5, "head_x_index": -0.25}


def test_file_is_emotions_json_shaped_with_only_non_zero_morphs(tmp_path):
    store = TemplateStore(tmp_path)
    store.save("neutral", pose_mod.zeros())
    store.save("anger", a_pose(eyebrow_angry_left_index=1.0))
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {"anger": {"eyebrow_angry_left_index": 1.0},
                                                             "neutral": {}}
    assert emotions.templates_from_json(json.loads((tmp_path / FILE_NAME).read_text()))  # loadable as is


def test_remove_forgets_the_saved_template(tmp_path):
    store = TemplateStore(tmp_path)
    store.save("joy", a_pose(mouth_aaa_index=0.5))
    store.save("fear", a_pose(mouth_iii_index=0.5))
    store.remove("joy")
    assert list(TemplateStore(tmp_path).load()) == ["fear"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path, monkeypatch, failing):
    store = TemplateStore(tmp_path)
    store.save("joy", a_pose(mouth_aaa_index=0.5))
    before = (tmp_path / FILE_NAME).read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError):
        store.save("joy", a_pose(mouth_aaa_index=1.0))
    monkeypatch.undo()
    assert (tmp_path / FILE_NAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]
    assert store.saved()["joy"][pose_mod.INDEX["mouth_aaa_index"]] == 0.5  # memory agrees with the disk


def test_damaged_file_is_moved_aside_not_overwritten(tmp_path):
    (tmp_path / FILE_NAME).write_text('{"joy": {"mouth_aaa_index": 0.5')
    assert TemplateStore(tmp_path).load() == {}
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{FILE_NAME}.damaged-")]
    assert len(aside) == 1 and aside[0].read_text() == '{"joy": {"mouth_aaa_index": 0.5'


def test_without_a_folder_templates_stay_in_memory(tmp_path):
    store = TemplateStore(None)
    store.save("joy", a_pose(mouth_aaa_index=0.5))
    assert not store.persistent and list(store.saved()) == ["joy"]


def test_engine_uses_saved_templates_as_the_servers_set(fake_engine, tmp_path):
    TemplateStore(tmp_path).save("joy", a_pose(mouth_aaa_index=0.5))
    fake_engine.use_template_store(TemplateStore(tmp_path))
    assert fake_engine.emotions()["joy"] == {"mouth_aaa_index": 0.5}
    fake_engine.load_emotion_templates({"joy": {"mouth_ooo_index": 1.0}})  # a character's own
    fake_engine.load_emotion_templates({})  # back to the server's set: the saved one, not the built-in
    assert fake_engine.emotions()["joy"] == {"mouth_aaa_index": 0.5}


def test_engine_save_and_reset_template(fake_engine, tmp_path):
    fake_engine.use_template_store(TemplateStore(tmp_path))
    fake_engine.save_template("fear", a_pose(mouth_uuu_index=0.75))
    assert fake_engine.emotions()["fear"] == {"mouth_uuu_index": 0.75}
    assert fake_engine.template_sets()["saved"] == ["fear"]
    builtin = fake_engine.reset_template("fear")
    assert np.array_equal(builtin, emotions.load_default_templates()["fear"])
    assert fake_engine.template_sets()["saved"] == [] and TemplateStore(tmp_path).load() == {}
    with pytest.raises(emotions.TemplateError):
        fake_engine.save_template("../fear", pose_mod.zeros())
