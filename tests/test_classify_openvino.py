"""The built-in classifier's encoder on OpenVINO (classifier/openvino_features.py): the same features and labels
as on torch, exported once into the cache, and torch again when OpenVINO cannot run it."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from classifier import openvino_features
from classifier.builtin import FEATURE_LAYERS, BuiltinClassifier
from classifier.embedding import SentenceEmbedder

HELDOUT = Path(__file__).parent / "data" / "classify_heldout.jsonl"
TEXTS = [json.loads(line)["text"] for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
TOLERANCE = 1e-5  # f32 on both; measured 2.2e-7 at most on the held-out set (the features are unit vectors)


@pytest.fixture(scope="module")
def on_openvino():
    return BuiltinClassifier()  # as the server builds it: the encoder from data/cache after the first start


@pytest.fixture(scope="module")
def on_torch():
    return BuiltinClassifier(backend="torch")


def test_the_server_s_classifier_runs_its_encoder_on_openvino(on_openvino, on_torch):
    assert (on_openvino.encoder.backend, on_torch.encoder.backend) == ("openvino", "torch")


def test_openvino_features_equal_torch_s_one_message_or_a_batch(on_openvino, on_torch):
    batch = on_openvino.encoder.embed(TEXTS)
    assert batch.shape == (len(TEXTS), on_torch.encoder.dimension)
    assert torch.allclose(batch, on_torch.encoder.embed(TEXTS), atol=TOLERANCE, rtol=0)
    longest = max(TEXTS, key=len)
    for text in ("ok", longest, "word " * 400):  # one token, the longest held-out line, past the 256-token cap
        assert torch.allclose(on_openvino.encoder.embed([text]), on_torch.encoder.embed([text]), atol=TOLERANCE,
                              rtol=0)


def test_openvino_gives_the_same_labels_and_scores_as_torch(on_openvino, on_torch):
    openvino_answers, torch_answers = on_openvino.classify_many(TEXTS), on_torch.classify_many(TEXTS)
    assert [a[0]["label"] for a in openvino_answers] == [a[0]["label"] for a in torch_answers]
    for ours, theirs in zip(openvino_answers, torch_answers):
        scores = {row["label"]: row["score"] for row in theirs}
        assert all(abs(row["score"] - scores[row["label"]]) < 1e-5 for row in ours)
    alone = on_openvino.classify(TEXTS[0])  # one at a time, as the route asks (no padding: the 7th digit moves)
    assert alone[0]["label"] == openvino_answers[0][0]["label"]
    assert abs(alone[0]["score"] - openvino_answers[0][0]["score"]) < 1e-5


@pytest.mark.slow
def test_the_encoder_is_exported_once_then_read_from_the_cache_without_torch_s_model(tmp_path, monkeypatch):
    exported = SentenceEmbedder(layers=FEATURE_LAYERS, cache_dir=tmp_path)
    assert exported.backend == "openvino"
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".bin", ".xml"]  # and no temporary folder left

    def no_torch_model(self):
        raise AssertionError("the torch model was loaded although the cache has the encoder")

    monkeypatch.setattr(SentenceEmbedder, "_torch_module", no_torch_model)
    cached = SentenceEmbedder(layers=FEATURE_LAYERS, cache_dir=tmp_path)
    assert cached.backend == "openvino"
    assert torch.equal(cached.embed(TEXTS[:8]), exported.embed(TEXTS[:8]))


def test_torch_serves_when_openvino_cannot_run_the_encoder(monkeypatch, caplog, on_torch):
    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(openvino_features, "load", broken)
    with caplog.at_level(logging.WARNING, logger="classifier.embedding"):
        embedder = SentenceEmbedder(layers=FEATURE_LAYERS)
    assert embedder.backend == "torch"
    assert "cannot run the encoder on OpenVINO (RuntimeError: no CPU plugin); running it on torch" in caplog.text
    assert torch.equal(embedder.embed(TEXTS[:8]), on_torch.encoder.embed(TEXTS[:8]))
