"""The classify module's section of the server's config, and the command-line flags that fill it (server.py
composes every module's)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    device: str = "cpu"  # or "cuda"
    model: str | None = None  # a Hugging Face text-classification model (hub id or local path); None: built-in


# The flags' own names for the fields: `Config(classify_device="cuda")` and `config.classification_model` in
# server.Config reach this section by them.
FLAT = {"classify_device": "device", "classification_model": "model"}


def add_arguments(parser) -> None:
    p = parser.add_argument_group("classify (emotion of a text)")
    device = p.add_mutually_exclusive_group()
    device.add_argument("--cpu", action="store_true", help="run classify on the CPU (default)")
    device.add_argument("--cuda", action="store_true", help="run classify on CUDA")
    p.add_argument("--classification-model", default=None, metavar="ID_OR_PATH",
                   help="a Hugging Face text-classification model (hub id or local path); default: built-in")


def from_args(a) -> Config:
    return Config(device="cuda" if a.cuda else "cpu", model=a.classification_model)


def check(section: Config) -> None:
    """Nothing to check before the classifier loads."""
