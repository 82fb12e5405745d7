"""`--classification-model ID_OR_PATH`: any Hugging Face text-classification model, its labels mapped onto the 28.

Loading is offline first (`local_files_only=True`): a cached model then loads in a fraction of a second or
fails at once, where a plain `from_pretrained` can hang for minutes retrying an unreachable hub. Only a hub id
that is not cached, on a machine not set offline (HF_HUB_OFFLINE), is downloaded, as transformers would.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from pathlib import Path

from classifier.cpu import one_cpu_thread
from classifier.errors import ClassifierError
from classifier.labels import LABELS, is_generic_label, is_known_label, map_label, neutral_only, ranked

log = logging.getLogger(__name__)

# A tokenizer saved without a limit reports model_max_length ≈ 1e30; then fall back to the position table.
_UNSET_MAX_LENGTH = 1_000_000
# RoBERTa-family models number positions from padding_idx + 1, so two of their position slots are unusable.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "bertweet": 2}


def hub_is_offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)


class HFClassifier:
    """A transformers text-classification pipeline whose scores are summed onto the 28 labels."""

    labels = list(LABELS)  # what the client may be sent, whatever the model's own label set

    def __init__(self, model_id: str, device: str = "cpu", allow_download: bool | None = None):
        self.name = model_id
        if allow_download is None:
            allow_download = not hub_is_offline()
        started = time.perf_counter()
        model, tokenizer, source = _load(model_id, allow_download)
        self.target_of = _label_mapping(model_id, model.config)
        self.max_length = _max_length(tokenizer, model.config)
        from transformers import pipeline

        self._pipeline = pipeline("text-classification", model=model.to(device).eval(), tokenizer=tokenizer,
                                  top_k=None, device=device)
        # The fast tokenizer changes its truncation state on every call and is not safe across threads.
        self._lock = threading.Lock()
        log.info("classification model %s loaded from %s on %s in %.2f s (%d labels, max %d tokens)",
                 model_id, source, device, time.perf_counter() - started, len(self.target_of), self.max_length)

    def classify(self, text: str) -> list[dict]:
        """Scores for all 28 labels (summing to 1), highest first. Long text is truncated to the model's limit."""
        if not text.strip():
            return neutral_only()
        with self._lock, one_cpu_thread():
            scores = self._pipeline(text, truncation=True, max_length=self.max_length)
        if scores and isinstance(scores[0], list):  # some versions wrap a single input's answer in a list
            scores = scores[0]
        return ranked(self._onto_labels(scores))

    def classify_many(self, texts: list[str]) -> list[list[dict]]:
        return [self.classify(text) for text in texts]

    def _onto_labels(self, scores: list[dict]) -> dict[str, float]:
        summed: dict[str, float] = defaultdict(float)
        for item in scores:
            summed[self.target_of[item["label"]]] += float(item["score"])
        return summed


def _load(model_id: str, allow_download: bool):
    """(model, tokenizer, where it came from); offline first, then the hub if allowed."""
    path = Path(model_id).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ClassifierError(f"--classification-model {model_id}: {path} has no config.json; "
                                  "give a directory saved with save_pretrained() or a Hugging Face model id")
        return (*_from_pretrained(str(path), model_id, local_only=True), f"directory {path.resolve()}")
    if _looks_like_a_path(model_id):
        raise ClassifierError(f"--classification-model {model_id}: no such directory")
    try:
        return (*_from_pretrained(model_id, model_id, local_only=True), "the local Hugging Face cache")
    except _NotCached as not_cached:
        if not allow_download:
            raise ClassifierError(
                f"--classification-model {model_id}: not a local directory and not in the Hugging Face cache, "
                "and downloads are off (offline); download it on a connected machine or give a local path"
            ) from not_cached
    log.info("%s is not in the local cache; downloading it from the Hugging Face hub "
             "(set HF_HUB_OFFLINE=1 to fail at once instead of retrying an unreachable hub)", model_id)
    return (*_from_pretrained(model_id, model_id, local_only=False), "the Hugging Face hub")


class _NotCached(Exception):
    pass


def _looks_like_a_path(model_id: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else that does not exist was meant as a directory."""
    return model_id.startswith((".", "/", "~")) or "\\" in model_id or model_id.count("/") > 1


def _from_pretrained(source: str, model_id: str, local_only: bool):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a progress bar per start is noise in a server log
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = AutoModelForSequenceClassification.from_pretrained(source, local_files_only=local_only)
    except OSError as e:
        if local_only and not Path(source).exists():
            raise _NotCached(str(e)) from e
        raise ClassifierError(f"--classification-model {model_id}: cannot load it: {_first_line(e)}") from e
    except (ValueError, KeyError) as e:  # e.g. a config whose model type has no sequence-classification head
        raise ClassifierError(f"--classification-model {model_id} is not a text-classification model: "
                              f"{_first_line(e)}") from e
    return model, tokenizer


def _label_mapping(model_id: str, config) -> dict[str, str]:
    """The model's label name → one of the 28; refuses heads with no usable label names."""
    names = [config.id2label[i] for i in sorted(config.id2label)]
    if len(names) < 2:
        raise ClassifierError(f"--classification-model {model_id} has {len(names)} output; "
                              "an emotion classifier needs one output per label")
    if all(is_generic_label(name) for name in names):
        raise ClassifierError(
            f"--classification-model {model_id} has only placeholder labels ({names[0]}, {names[1]}, …): its "
            "classification head looks untrained or unnamed; use a model fine-tuned for emotions")
    mapping = {name: map_label(name) for name in names}
    unknown = [name for name in names if not is_known_label(name)]
    if unknown:
        log.warning("labels of %s not in the mapping table, scored as neutral: %s", model_id, ", ".join(unknown))
    log.info("label mapping for %s: %s", model_id,
             ", ".join(f"{name}→{target}" for name, target in mapping.items() if name != target) or "identity")
    return mapping


def _max_length(tokenizer, config) -> int:
    """The longest input the model accepts, in tokens (special tokens included)."""
    if tokenizer.model_max_length and tokenizer.model_max_length < _UNSET_MAX_LENGTH:
        return int(tokenizer.model_max_length)
    positions = getattr(config, "max_position_embeddings", None) or 512
    return int(positions) - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
