"""The talkinghead module's section of the server's config, and the command-line flags that fill it.

server.py composes every module's flags (`add_arguments`) into one parser and reads each module's section from
the parsed flags (`from_args`); `check` runs at start, before the engine loads, for what can fail at once.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from modules import FlagError, SetupError
from talkinghead import weights
from talkinghead.avatars import DEFAULT_MAX_AVATARS
from modules.viewers import DEFAULT_MAX_VIEWERS
from talkinghead.build import VARIANTS

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")


@dataclass
class Config:
    gpu: bool = False
    model: str = "auto"
    models: str | None = None  # folder of <variant>/<network>.pt; None: data/models
    backend: str = "auto"
    idle_seconds: float = 5.0  # no viewer for this long: an avatar stops rendering (0: never)
    mocap: str | None = None  # ifacialmocap[:PHONE_IP] or vmc[:PORT]: face capture drives the pose
    user_data: str | None = None  # the user's saved emotion templates; None: kept in memory only (tests)
    keyframes: str | None = None  # the CPU stream's keyframes per character; None: not kept (tests)
    max_avatars: int = DEFAULT_MAX_AVATARS  # avatars a server holds at once, the default one included
    max_viewers: int = DEFAULT_MAX_VIEWERS  # result_feed viewers at once, all avatars together; the next: 503


# The flags' own names for the fields (argparse's dest): `Config(user_data=...)` and `config.talkinghead_gpu`
# in server.Config reach this section by them.
FLAT = {"talkinghead_gpu": "gpu", "talkinghead_model": "model", "talkinghead_models": "models",
        "talkinghead_backend": "backend", "talkinghead_idle_seconds": "idle_seconds",
        "talkinghead_mocap": "mocap", "user_data": "user_data", "talkinghead_keyframes": "keyframes",
        "talkinghead_max_avatars": "max_avatars", "talkinghead_max_viewers": "max_viewers"}


def add_arguments(parser) -> None:
    p = parser.add_argument_group("talkinghead (the avatar)")
    p.add_argument("--talkinghead-gpu", action="store_true", help="run the THA3 poser on CUDA")
    p.add_argument("--talkinghead-model", default="auto", choices=VARIANTS,
                   help="THA3 model variant (auto: separable_half on GPU, separable_float on CPU)")
    p.add_argument("--talkinghead-models", default=None, metavar="DIR",
                   help="folder holding <variant>/<network>.pt (default: data/models)")
    p.add_argument("--talkinghead-backend", default="auto", choices=BACKENDS,
                   help="inference backend for the poser (default auto: the fastest available)")
    p.add_argument("--talkinghead-idle-seconds", type=float, default=5.0, metavar="S",
                   help="stop rendering when no result_feed has been open for S seconds; the next viewer "
                        "resumes it (default 5; 0: never stop)")
    p.add_argument("--talkinghead-mocap", default=None, metavar="SOURCE",
                   help="face capture drives the character: ifacialmocap[:PHONE_IP] (UDP 49983) or vmc[:PORT] "
                        "(OSC, default 39539); loopback only unless --listen")
    p.add_argument("--user-data", default=str(weights.DATA_DIR / "user"), metavar="DIR",
                   help="folder for what the user saves, e.g. emotion templates from the manual poser "
                        "(default: data/user)")
    p.add_argument("--talkinghead-keyframes", default=str(weights.DATA_DIR / "cache" / "keyframes"), metavar="DIR",
                   help="folder where the CPU stream keeps each character's keyframes, so a restart or a character "
                        "seen before starts warm (at most 200 MB a character, 1 GB in all; default: "
                        "data/cache/keyframes; 'none': not kept)")
    p.add_argument("--talkinghead-max-avatars", type=int, default=DEFAULT_MAX_AVATARS, metavar="N",
                   help=f"avatars the server holds at once, the default one included (default "
                        f"{DEFAULT_MAX_AVATARS}); POST /api/talkinghead/avatars past it answers 429")
    p.add_argument("--talkinghead-max-viewers", type=int, default=DEFAULT_MAX_VIEWERS, metavar="N",
                   help="result_feed streams open at once, all avatars together; the next viewer gets a 503 "
                        f"(default {DEFAULT_MAX_VIEWERS})")


def from_args(a) -> Config:
    """This section from parsed flags; FlagError names a flag whose value cannot be used."""
    if a.talkinghead_idle_seconds < 0:
        raise FlagError("--talkinghead-idle-seconds must be 0 or more")
    if a.talkinghead_max_avatars < 1:
        raise FlagError("--talkinghead-max-avatars must be 1 or more")
    if a.talkinghead_max_viewers < 1:
        raise FlagError("--talkinghead-max-viewers must be 1 or more")
    if a.talkinghead_mocap:
        from talkinghead.mocap import MocapError, parse_spec
        try:
            parse_spec(a.talkinghead_mocap)
        except MocapError as e:
            raise FlagError(f"--talkinghead-mocap: {e}") from None
    keyframes = None if a.talkinghead_keyframes.lower() == "none" else a.talkinghead_keyframes
    return Config(gpu=a.talkinghead_gpu, model=a.talkinghead_model, models=a.talkinghead_models,
                  backend=a.talkinghead_backend, idle_seconds=a.talkinghead_idle_seconds, mocap=a.talkinghead_mocap,
                  user_data=a.user_data, keyframes=keyframes, max_avatars=a.talkinghead_max_avatars,
                  max_viewers=a.talkinghead_max_viewers)


def check(section: Config) -> None:
    """At start, before the engine loads: the folder for what the user saves must take a file, or saving
    would fail later, in the middle of use. SetupError (one line) when it does not."""
    if not section.user_data:
        return
    folder = Path(section.user_data)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise SetupError(f"the data folder {folder} is not writable ({e.strerror or e}); make it "
                         "writable, or choose another with --user-data DIR") from None
