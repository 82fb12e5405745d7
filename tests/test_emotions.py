"""The 28 emotion templates shipped as JSON, and the `load_emotion_templates` parser."""
from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead import pose
from talkinghead.emotions import (EMOTIONS, TEMPLATE_DIR, TemplateError, load_default_templates,
                                  templates_from_json)

GO_EMOTIONS = {
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief",
    "joy", "love", "nervousness", "neutral", "optimism", "pride", "realization", "relief", "remorse",
    "sadness", "surprise",
}
ROTATIONS = [pose.INDEX[name] for name in ("head_x_index", "head_y_index", "neck_z_index", "body_y_index",
                                           "body_z_index", "breathing_index")]


def test_there_is_one_json_template_per_go_emotion():
    assert set(EMOTIONS) == GO_EMOTIONS and len(EMOTIONS) == 28
    assert {path.stem for path in TEMPLATE_DIR.glob("*.json")} == GO_EMOTIONS


def test_default_templates_load_as_45_float32_within_range():
    templates = load_default_templates()
    assert set(templates) == GO_EMOTIONS
    for name, template in templates.items():
        assert template.shape == (45,) and template.dtype == np.float32, name
        assert np.all(template >= pose.LOW) and np.all(template <= pose.HIGH), name


def test_json_files_list_only_known_non_zero_morphs():
    for name in EMOTIONS:
        morphs = json.loads((TEMPLATE_DIR / f"{name}.json").read_text())
        assert all(key in pose.INDEX for key in morphs), name
        assert all(value != 0 for value in morphs.values()), name


def test_neutral_is_all_zeros_and_every_other_emotion_is_its_own_expression():
    templates = load_default_templates()
    assert not templates["neutral"].any()
    others = [name for name in EMOTIONS if name != "neutral"]
    for name in others:
        assert templates[name][pose.EYEBROW].any() or templates[name][pose.FACE].any(), name
    distinct = {templates[name].tobytes() for name in others}
    assert len(distinct) == len(others)


def test_templates_leave_head_pose_mild_and_breathing_to_the_animator():
    for name, template in load_default_templates().items():
        assert np.all(np.abs(template[ROTATIONS[:-1]]) <= 0.3), name
        assert template[ROTATIONS[-1]] == 0.0, name


def test_loaded_templates_are_copies():
    load_default_templates()["joy"][:] = 1.0
    assert load_default_templates()["joy"].max() <= 1.0 and not np.all(load_default_templates()["joy"] == 1.0)


def test_empty_json_gives_the_defaults():
    defaults = load_default_templates()
    loaded = templates_from_json({})
    assert set(loaded) == set(defaults)
    for name in defaults:
        np.testing.assert_array_equal(loaded[name], defaults[name])


def test_given_emotions_replace_their_default_and_left_out_morphs_are_zero():
    loaded = templates_from_json({"joy": {"mouth_smirk": 0.5, "head_x_index": -0.25}})
    expected = np.zeros(45, np.float32)
    expected[pose.INDEX["mouth_smirk"]] = 0.5
    expected[pose.INDEX["head_x_index"]] = -0.25
    np.testing.assert_array_equal(loaded["joy"], expected)
    np.testing.assert_array_equal(loaded["anger"], load_default_templates()["anger"])


@pytest.mark.parametrize("body, named", [
    ({"hangry": {}}, "'hangry'"),
    ({"joy": {"mouth_grin_index": 0.5}}, "'mouth_grin_index'"),
    ({"joy": {"mouth_aaa_index": 1.5}}, "'mouth_aaa_index'"),
    ({"joy": {"head_x_index": -1.01}}, "'head_x_index'"),
    ({"joy": {"mouth_aaa_index": "wide"}}, "'mouth_aaa_index'"),
    ({"joy": {"mouth_aaa_index": True}}, "'mouth_aaa_index'"),
    ({"joy": {"mouth_aaa_index": None}}, "'mouth_aaa_index'"),
    ({"joy": [0.5]}, "'joy'"),
])
def test_bad_templates_raise_an_error_naming_the_offender(body, named):
    with pytest.raises(TemplateError) as error:
        templates_from_json(body)
    assert named in str(error.value)
    assert isinstance(error.value, ValueError)


def test_errors_in_a_morph_also_name_the_emotion():
    with pytest.raises(TemplateError, match="'fear'.*'mouth_grin_index'"):
        templates_from_json({"fear": {"mouth_grin_index": 0.5}})


def test_templates_body_must_be_an_object():
    with pytest.raises(TemplateError):
        templates_from_json([{"joy": {}}])
