"""--classification-model: a Hugging Face text-classification model from a directory, its labels mapped onto
the 28. The models are tiny, randomly initialised BERTs that each test saves to a temp directory: no download."""
from __future__ import annotations

import logging

import pytest
import torch

from classifier import ClassifierError, LABELS, load_classifier
from classifier.hf import HFClassifier, _max_length
from modules import SetupError
from server import Config, create_app

DAIR_AI_LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
MAX_POSITIONS = 64
WORDS = ["i", "am", "so", "happy", "sad", "angry", "love", "you", "thank", "the", "a", "is", "it", "this",
         "##s", "##ing", ".", "!", "?", ","]


def save_tiny_model(directory, labels: list[str], max_length: int | None = MAX_POSITIONS):
    """A 1-layer BERT with a random head and a word-piece tokenizer built from a 25-line vocab file."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer_args = {"model_max_length": max_length} if max_length else {}
    BertTokenizerFast(vocab_file=str(vocab), **tokenizer_args).save_pretrained(directory)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=MAX_POSITIONS,
                        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def dair_ai_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("dair-ai"), DAIR_AI_LABELS)


def assert_is_distribution_over_the_28(classification):
    assert sorted(item["label"] for item in classification) == sorted(LABELS)
    scores = [item["score"] for item in classification]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_dair_ai_labels_map_onto_themselves(dair_ai_model):
    engine = load_classifier(str(dair_ai_model))
    assert engine.target_of == {label: label for label in DAIR_AI_LABELS}
    classification = engine.classify("i am so happy")
    assert_is_distribution_over_the_28(classification)
    # Only the six labels the model has can score; the other 22 are 0.
    assert {item["label"] for item in classification if item["score"] > 0} == set(DAIR_AI_LABELS)


def test_foreign_labels_are_mapped_by_the_table_and_unknown_ones_become_neutral(tmp_path, caplog):
    model_dir = save_tiny_model(tmp_path / "foreign", ["happy", "Angry", "others", "zorblax", "Frustration"])
    with caplog.at_level(logging.WARNING, logger="classifier.hf"):
        engine = HFClassifier(str(model_dir))
    assert engine.target_of == {"happy": "joy", "Angry": "anger", "others": "neutral", "zorblax": "neutral",
                                "Frustration": "annoyance"}
    assert "zorblax" in caplog.text and "others" not in caplog.text  # only truly unknown labels are warned about
    raw = {item["label"]: item["score"] for item in engine._pipeline("you is angry", top_k=None)}
    scores = {item["label"]: item["score"] for item in engine.classify("you is angry")}
    assert scores["neutral"] == pytest.approx(raw["others"] + raw["zorblax"], abs=1e-5)
    assert scores["joy"] == pytest.approx(raw["happy"], abs=1e-5)


def test_placeholder_labels_are_refused_with_a_message(tmp_path):
    model_dir = save_tiny_model(tmp_path / "untrained", ["LABEL_0", "LABEL_1", "LABEL_2"])
    with pytest.raises(ClassifierError, match="placeholder labels .*LABEL_0.*untrained"):
        load_classifier(str(model_dir))


def test_server_start_with_an_unusable_model_is_a_one_line_setup_error(tmp_path):
    model_dir = save_tiny_model(tmp_path / "untrained", ["LABEL_0", "LABEL_1"])
    with pytest.raises(SetupError) as error:
        create_app(Config(modules=["classify"], classification_model=str(model_dir)))
    assert str(error.value).startswith("classify: --classification-model") and "\n" not in str(error.value)


def test_long_text_is_truncated_to_the_model_limit(dair_ai_model):
    engine = load_classifier(str(dair_ai_model))
    assert engine.max_length == MAX_POSITIONS
    assert_is_distribution_over_the_28(engine.classify("i am so happy this is it! " * 4000))  # 104 000 chars


def test_tokenizer_without_a_limit_falls_back_to_the_position_table(tmp_path):
    engine = HFClassifier(str(save_tiny_model(tmp_path / "nolimit", DAIR_AI_LABELS, max_length=None)))
    assert engine.max_length == MAX_POSITIONS
    assert_is_distribution_over_the_28(engine.classify("love you " * 1000))


def test_roberta_position_table_leaves_room_for_its_offset():
    class NoLimit:
        model_max_length = int(1e30)

    class RobertaConfig:
        model_type, max_position_embeddings = "roberta", 514

    assert _max_length(NoLimit(), RobertaConfig()) == 512


def test_empty_text_is_neutral_first(dair_ai_model):
    assert load_classifier(str(dair_ai_model)).classify("  ")[0] == {"label": "neutral", "score": 1.0}


def test_served_over_http(dair_ai_model):
    client = create_app(Config(modules=["classify"], classification_model=str(dair_ai_model))).test_client()
    classification = client.post("/api/classify", json={"text": "thank you"}).get_json()["classification"]
    assert_is_distribution_over_the_28(classification)
    assert client.get("/api/classify/labels").get_json()["labels"] == list(LABELS)


def test_hub_id_not_in_the_cache_fails_at_once_when_downloads_are_off():
    with pytest.raises(ClassifierError, match="not in the Hugging Face cache"):
        HFClassifier("no-such-user/no-such-emotion-model", allow_download=False)


def test_directory_that_is_not_a_model_says_so(tmp_path):
    with pytest.raises(ClassifierError, match="no config.json"):
        load_classifier(str(tmp_path))


def test_missing_directory_says_no_such_directory(tmp_path):
    with pytest.raises(ClassifierError, match="no such directory"):
        load_classifier(str(tmp_path / "not-there"))
