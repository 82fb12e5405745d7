"""The benchmarks run as `python -m bench.NAME` from the repository root (bench/__init__.py, docs/performance.md):
each imports there as it is, with no sys.path edits, and benches share code through the package
(`bench.common`, `bench.bench_delivery`), not through the folder put on sys.path."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem != "__init__")


def test_no_bench_edits_sys_path():
    edits = []
    for name in BENCHES:
        path = REPO / "bench" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                edits.append(f"bench/{name}.py:{node.lineno}")
    assert not edits, f"sys.path used (run benches as python -m bench.NAME instead): {edits}"


@pytest.mark.slow
def test_every_bench_imports_as_a_module_from_the_repository_root():
    """All of them in one fresh interpreter, as `python -m` would start it: the repository root on sys.path,
    nothing else of ours (no PYTHONPATH, not the tests' folder pytest adds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('bench.' + name)\n"
    result = subprocess.run([sys.executable, "-c", code, *BENCHES], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
