"""The tree as the README's Layout section describes it, and its layering: each layer imports only the ones
below it (server → modules → classifier → talkinghead).

Read from the source (no import): `talkinghead/` is the engine and knows neither the HTTP layer, the server nor
the classifier; `classifier/` knows neither of the first two; `modules/` is imported by the server, never the
other way round.
"""
from __future__ import annotations

import ast
import fnmatch
import re
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


# -- the README's Layout section -------------------------------------------------------------------------------
NAME_COLUMNS = 21  # an entry's names stand in the first columns; its description follows


def layout_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^## Layout\n```\n(.*?)^```", readme, re.S | re.M)
    assert block, "README.md: no ## Layout section with a code block"
    return block.group(1)


def layout_entries() -> dict[str, list[str]]:
    """{top-level entry: [its sub-entries]} from the block: names at column 0 are top-level, names indented by
    two spaces belong to the top-level folder above them, deeper lines continue a description."""
    entries: dict[str, list[str]] = {}
    parent = None
    for line in layout_block().splitlines():
        if line and not line[0].isspace():
            names = line[:NAME_COLUMNS].split()
            for name in names:
                entries[name] = []
            parent = names[-1]
        elif line.startswith("  ") and not line[2].isspace():
            entries[parent] += line[2:NAME_COLUMNS].split()
    return entries


def section_of(top: str) -> str:
    """The text of a top-level folder's entry, its sub-entries and their descriptions."""
    lines, inside = [], False
    for line in layout_block().splitlines():
        if line and not line[0].isspace():
            inside = top in line[:NAME_COLUMNS].split()
        if inside:
            lines.append(line)
    return "\n".join(lines)


def ignored(name: str, at_root: bool = True) -> bool:
    """Named by .gitignore: made by setup or a build (data/, .venv/, build/, ...), not part of the tree. A
    pattern that starts with / holds at the top level only (/data/, not classifier/data/)."""
    for pattern in (REPO / ".gitignore").read_text().splitlines():
        pattern = pattern.strip()
        if pattern and not pattern.startswith("#") and (at_root or not pattern.startswith("/")) \
                and fnmatch.fnmatch(name, pattern.strip("/")):
            return True
    return False


def test_every_entry_of_the_layout_exists():
    entries = layout_entries()
    assert {"server.py", "modules/", "talkinghead/", "classifier/", "data/"} <= set(entries), entries
    for top, subs in entries.items():
        if not ignored(top.rstrip("/")):
            assert (REPO / top).exists(), f"README Layout names {top}, which is not in the tree"
        for sub in subs:
            assert (REPO / top / sub).exists(), f"README Layout names {top}{sub}, which is not in the tree"


def test_every_folder_and_engine_module_is_in_the_layout():
    entries = layout_entries()
    block = layout_block()
    for path in sorted(REPO.iterdir()):
        if path.name.startswith(".") or ignored(path.name) or path.name in ("LICENSE", "README.md"):
            continue
        if path.is_dir():
            assert f"{path.name}/" in entries, f"README Layout does not list the folder {path.name}/"
        else:
            assert re.search(rf"(?<![\w/.-]){re.escape(path.name)}(?![\w-])", block), \
                f"README Layout does not name {path.name}"
    engine = section_of("talkinghead/")
    for path in sorted((REPO / "talkinghead").iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            assert f"{path.name}/" in entries["talkinghead/"], f"README Layout: talkinghead/{path.name}/ missing"
        elif path.suffix == ".py" and path.name != "__init__.py":
            assert re.search(rf"\b{re.escape(path.name)}\b", engine), f"README Layout: talkinghead/{path.name} missing"
    for package in ("animation", "lipsync", "smooth", "mocap"):
        for path in sorted((REPO / "talkinghead" / package).glob("*.py")):
            if path.name != "__init__.py":
                assert re.search(rf"\b{re.escape(path.name)}\b", engine), \
                    f"README Layout: talkinghead/{package}/{path.name} missing"
