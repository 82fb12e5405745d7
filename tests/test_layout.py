"""The tree's layering: each layer imports only the ones below it (server → modules → talkinghead, classifier).

Read from the source (no import): `talkinghead/` is the engine and knows neither the HTTP layer nor the server;
`classifier/` knows neither; `modules/` is imported by the server, never the other way round.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# package → top-level names its modules must not import
FORBIDDEN = {"talkinghead": {"server", "modules", "classifier"}, "classifier": {"server", "modules"},
             "modules": {"server"}}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_package_imports_a_layer_above_it():
    wrong = {}
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((REPO / package).rglob("*.py")):
            upward = imported_top_levels(path) & forbidden
            if upward:
                wrong[str(path.relative_to(REPO))] = sorted(upward)
    assert not wrong, f"imports from a layer above: {wrong}"
