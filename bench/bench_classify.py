"""How fast does the classifier start and answer, and how often is it right? (CPU by default)

    .venv/bin/python -m bench.bench_classify [--model ID_OR_PATH] [--device cpu|cuda]

Built-in: load time cold (empty cache: export the encoder to OpenVINO, embed the training set and fit the
head) and warm (both from the cache), each in a fresh Python process as a server start sees them; then each
held-out message classified one at a time, as the HTTP route does. Accuracy is top-1 and coarse family, on the
whole held-out set and on its plain and hard (implicit emotion) parts. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "tests" / "data" / "classify_heldout.jsonl"


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def load_in_fresh_process(cache_dir: Path, device: str) -> dict:
    """{"import": s, "load": s} for the built-in classifier, measured in a new Python process (as a server start
    pays it: nothing imported, nothing in memory)."""
    command = [sys.executable, "-m", "bench.bench_classify", "--load-only", str(cache_dir), "--device", device]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def load_only(cache_dir: Path, device: str) -> None:
    started = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    imported = time.perf_counter()
    from classifier.builtin import BuiltinClassifier

    BuiltinClassifier(device=device, cache_dir=cache_dir)
    print(json.dumps({"import": imported - started, "load": time.perf_counter() - imported}))


def load_engine(model: str | None, device: str) -> tuple[object, list[tuple[str, float]]]:
    """The engine to measure, and (what, seconds) rows for the load table."""
    if model:
        from classifier.hf import HFClassifier

        engine, seconds = timed(HFClassifier, model, device=device)
        return engine, [(f"load {model} (in this process, after imports)", seconds)]
    from classifier.builtin import BuiltinClassifier

    with tempfile.TemporaryDirectory() as cache:
        cold = load_in_fresh_process(Path(cache), device)
        warm = load_in_fresh_process(Path(cache), device)
        engine = BuiltinClassifier(device=device, cache_dir=Path(cache))
    return engine, [("import torch + transformers (fresh process)", warm["import"]),
                    ("load, cold: export the encoder, embed training set, fit head", cold["load"]),
                    ("load, warm: encoder and head from cache", warm["load"])]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a --classification-model to measure instead of built-in")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--load-only", type=Path, metavar="CACHE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        return load_only(args.load_only, args.device)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from classifier import FAMILY_OF

    engine, load_rows = load_engine(args.model, args.device)
    examples = [json.loads(line) for line in HELDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    engine.classify("warm-up")  # first call pays one-off allocations
    latencies, predicted = [], []
    for example in examples:
        answer, seconds = timed(engine.classify, example["text"])
        latencies.append(seconds)
        predicted.append(answer[0]["label"])

    import torch

    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n**{engine.name}** on {args.device}; torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load_avg:.1f} at the end\n")
    print("| step | seconds |\n|---|---:|")
    for what, seconds in load_rows:
        print(f"| {what} | {seconds:.2f} |")
    print(f"\n| per message ({len(examples)} held-out, one at a time) | ms |\n|---|---:|")
    print(f"| median | {statistics.median(latencies) * 1000:.1f} |")
    print(f"| p95 | {percentile(latencies, 0.95) * 1000:.1f} |")
    print(f"| longest | {max(latencies) * 1000:.1f} |")
    print("\n| held-out part | messages | top-1 | family |\n|---|---:|---:|---:|")
    parts = {"all": lambda e: True, "plain": lambda e: not e.get("hard"), "hard (implicit)": lambda e: e.get("hard")}
    for part, belongs in parts.items():
        pairs = [(e["label"], p) for e, p in zip(examples, predicted) if belongs(e)]
        if not pairs:
            continue
        top1 = sum(expected == got for expected, got in pairs) / len(pairs)
        family = sum(FAMILY_OF[expected] == FAMILY_OF[got] for expected, got in pairs) / len(pairs)
        print(f"| {part} | {len(pairs)} | {top1:.1%} | {family:.1%} |")


if __name__ == "__main__":
    main()
