"""POST /api/classify and GET /api/classify/labels as api.md describes them, on the built-in classifier."""
from __future__ import annotations

import pytest

from classifier import LABELS
from classifier.builtin import BuiltinClassifier
from modules import SetupError
from modules.classify.routes import labels_for
from server import Config, create_app


@pytest.fixture(scope="module")
def engine():
    return BuiltinClassifier()  # the head comes from data/cache after the first fit


@pytest.fixture(scope="module")
def client(engine):
    return create_app(Config(modules=["classify"]), engines={"classify": engine}).test_client()


class RecordingAvatar:
    """Stands in for the talkinghead engine: remembers what classify asked it to show."""

    def __init__(self, fail: bool = False):
        self.emotions: list[str] = []
        self.fail = fail

    def set_emotion(self, name: str) -> str:
        self.emotions.append(name)
        if self.fail:
            raise RuntimeError("renderer gone")
        return name


def classify(client, text):
    response = client.post("/api/classify", json={"text": text})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["classification"]


def test_classify_returns_every_label_sorted_highest_first(client):
    classification = classify(client, "Thank you so much for helping me move, you're the best!")
    assert sorted(item["label"] for item in classification) == sorted(LABELS)
    scores = [item["score"] for item in classification]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert all(isinstance(item["score"], float) for item in classification)
    assert classification[0]["label"] == "gratitude"


@pytest.mark.parametrize("text", ["", "   ", "\n\t  "])
def test_empty_or_whitespace_text_is_neutral_first(client, text):
    classification = classify(client, text)
    assert classification[0] == {"label": "neutral", "score": 1.0}
    assert len(classification) == len(LABELS)


def test_100000_characters_are_answered_not_crashed(client):
    classification = classify(client, "I am so happy today! " * 5000)  # 105 000 characters
    assert len(classification) == len(LABELS)
    assert classification[0]["label"] in LABELS


@pytest.mark.parametrize("body, message", [
    ({}, 'missing field "text"'),
    ({"txt": "hello"}, 'missing field "text"'),
    ({"text": None}, '"text" must be a string, not null'),
    ({"text": 42}, '"text" must be a string, not a number'),
    ({"text": ["hi"]}, '"text" must be a string, not an array'),
])
def test_missing_or_non_string_text_is_400_json(client, body, message):
    response = client.post("/api/classify", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_body_that_is_not_a_json_object_is_rejected(client):
    assert client.post("/api/classify", data="text=hi").status_code == 415
    assert client.post("/api/classify", data="{not json", content_type="application/json").status_code == 400
    assert client.post("/api/classify", json=["hi"]).status_code == 400


def test_errors_carry_cors_headers(client):
    response = client.post("/api/classify", json={}, headers={"Origin": "http://localhost:8000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8000"


def test_labels_without_talkinghead_are_the_28(client):
    response = client.get("/api/classify/labels")
    assert response.status_code == 200
    assert response.get_json() == {"labels": list(LABELS)}


def test_labels_for_appends_talkinghead_only_when_enabled():
    assert labels_for(list(LABELS), ["classify"]) == list(LABELS)
    assert labels_for(list(LABELS), ["talkinghead", "classify"]) == [*LABELS, "talkinghead"]


def test_top_label_becomes_the_avatar_emotion(engine):
    avatar = RecordingAvatar()
    client = create_app(Config(modules=["classify"]), engines={"classify": engine, "talkinghead": avatar}).test_client()
    top = classify(client, "Ugh, gross, there's mould all over the bread.")[0]["label"]
    assert avatar.emotions == [top] == ["disgust"]


def test_avatar_failure_still_answers_the_classification(engine):
    avatar = RecordingAvatar(fail=True)
    client = create_app(Config(modules=["classify"]), engines={"classify": engine, "talkinghead": avatar}).test_client()
    assert classify(client, "I'm terrified, something is in the attic")[0]["label"] == "fear"
    assert avatar.emotions == ["fear"]


def test_with_talkinghead_module_labels_end_with_talkinghead_and_emotion_follows(engine, fake_engine, monkeypatch):
    """Both modules on, as the README runs them (the talkinghead engine on the fake poser from conftest)."""
    asked = []
    original = fake_engine.set_emotion
    monkeypatch.setattr(fake_engine, "set_emotion", lambda name: asked.append(name) or original(name))
    app = create_app(Config(modules=["classify", "talkinghead"]),
                     engines={"classify": engine, "talkinghead": fake_engine})
    client = app.test_client()
    assert client.get("/api/classify/labels").get_json()["labels"] == [*LABELS, "talkinghead"]
    classify(client, "I love you so much, darling")
    assert asked == ["love"]


def test_cuda_requested_without_cuda_is_a_one_line_setup_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SetupError, match="--cuda") as error:
        create_app(Config(modules=["classify"], classify_device="cuda"))
    assert "\n" not in str(error.value)


def test_concurrent_requests_all_get_full_answers(client):
    """waitress serves requests on many threads; the engine serialises them (the fast tokenizer is not
    thread-safe), so every answer is complete."""
    from concurrent.futures import ThreadPoolExecutor

    texts = ["thanks a lot!", "ugh, not again", "I'm scared", "haha that's hilarious"] * 6
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda text: client.post("/api/classify", json={"text": text}), texts))
    assert all(a.status_code == 200 and len(a.get_json()["classification"]) == len(LABELS) for a in answers)


def test_classifying_leaves_the_callers_torch_thread_count_alone(engine):
    import torch

    before = torch.get_num_threads()
    engine.classify("just checking")
    assert torch.get_num_threads() == before
