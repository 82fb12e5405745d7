"""Emotion classification for chat messages: text → scores for the 28 GoEmotions labels the avatar knows.

    engine = load_classifier()                    # built-in, offline, from PyPI packages alone
    engine = load_classifier("j-hartmann/emotion-english-distilroberta-base", device="cuda")
    engine.classify("thank you so much!")         # [{"label": "gratitude", "score": 0.93}, …] all 28, sorted

No Flask here; modules/classify wraps this for HTTP.
"""
from __future__ import annotations

from typing import Protocol

from classifier.errors import ClassifierError
from classifier.labels import FAMILIES, FAMILY_OF, LABELS, map_label

__all__ = ["Classifier", "ClassifierError", "FAMILIES", "FAMILY_OF", "LABELS", "load_classifier", "map_label"]


class Classifier(Protocol):
    name: str
    labels: list[str]

    def classify(self, text: str) -> list[dict]:
        """[{"label", "score"}] for all 28 labels, scores summing to 1, highest first."""

    def classify_many(self, texts: list[str]) -> list[list[dict]]:
        """`classify` for each text (batched where the engine can)."""


def load_classifier(model: str | None = None, device: str = "cpu") -> Classifier:
    """The built-in classifier (model None) or a Hugging Face text-classification model (hub id or directory).

    Raises ClassifierError with a one-line message when the model or device cannot be used.
    """
    check_device(device)
    if model:
        from classifier.hf import HFClassifier

        return HFClassifier(model, device=device)
    from classifier.builtin import BuiltinClassifier

    return BuiltinClassifier(device=device)


def check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise ClassifierError(f"unknown classify device {device!r}; use cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ClassifierError("--cuda was given but no CUDA device is available to PyTorch; "
                                  "run without --cuda (classify on the CPU)")
