"""`pip install .` (and `-e .`) into a fresh virtual environment gives a working `talkinghead-extras` command,
and the installed copy imports all its modules and finds every file it reads beside its code (pyproject.toml,
docs/install.md).

Offline and quick (~10 s): the venv sees the test environment's packages through a .pth file, pip installs only
the project (--no-deps --no-build-isolation --no-index: setuptools comes from there too), from a copy of the
checkout, so the build's build/ and *.egg-info stay out of the tree.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from test_layout import ignored

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("modules", "talkinghead", "classifier")
pytestmark = pytest.mark.slow


def copy_checkout(dest: Path) -> Path:
    """The checkout without what .gitignore names (.venv/, data/, caches, build outputs) and .git."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        at_root = Path(folder) == REPO
        return {n for n in names if n == ".git" or ignored(n, at_root)}

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def fresh_venv(folder: Path) -> tuple[Path, Path]:
    """A venv without pip whose site-packages also sees this interpreter's (pip, setuptools, the pins):
    its python and its site-packages."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, Path(site)


def run(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


# Run in the installed environment: every module of the packages imports from there, each reports where it
# and the files it reads are.
PROBE = r"""
import importlib, json, pkgutil
import server, modules, talkinghead, classifier
names = ["server"]
for package in (modules, talkinghead, classifier):
    names += [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
files = {name: importlib.import_module(name).__file__ for name in names}
from classifier import builtin
from modules.talkinghead import manual_poser_routes
from talkinghead import emotions, manual_poser, weights
print(json.dumps({"files": files, "data_dir": str(weights.DATA_DIR), "classifier_cache": str(builtin.DEFAULT_CACHE_DIR),
                  "read": [str(builtin.TRAINING_DATA), str(manual_poser_routes.STATIC_DIR / "index.html"),
                           str(manual_poser.SERVER_PROGRAM)],
                  "templates": len(emotions.load_default_templates())}))
"""


@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_gives_the_command_and_a_complete_package(tmp_path, editable):
    source = copy_checkout(tmp_path / "checkout")
    python, site = fresh_venv(tmp_path / "venv")
    run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
        "--disable-pip-version-check", *(["-e"] if editable else []), source, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing may import from the working directory
    elsewhere.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k not in ("TALKINGHEAD_DATA_DIR", "PYTHONPATH")},
           "XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONNOUSERSITE": "1"}

    def in_venv(*args) -> str:
        return run(*args, cwd=elsewhere, env=env).stdout

    usage = in_venv(python.parent / "talkinghead-extras", "--help")
    assert usage.startswith("usage: talkinghead-extras") and "--enable-modules" in usage
    assert "--talkinghead-keyframes" in usage
    assert "--port" in in_venv(python, "-m", "talkinghead.manual_poser", "--help")

    found = json.loads(in_venv(python, "-c", PROBE))
    installed = source if editable else site
    outside = {name: f for name, f in found["files"].items() if not Path(f).is_relative_to(installed)}
    assert not outside, f"imported from outside the installed copy {installed}: {outside}"
    assert {"modules.talkinghead.routes", "talkinghead.tha3.poser", "classifier.builtin"} <= set(found["files"])
    assert all(Path(f).is_file() for f in found["read"]) and found["templates"] == 28
    if editable:  # a checkout: its data/ folder, as ./run.sh uses
        assert found["data_dir"] == str(source / "data") and found["classifier_cache"] == str(source / "data" / "cache")
    else:  # installed: the user's data folder
        assert found["data_dir"] == str(tmp_path / "xdg" / "talkinghead-extras")
        assert found["classifier_cache"] == str(tmp_path / "xdg" / "talkinghead-extras" / "cache")
        # every file of the packages that is not Python (pages, templates, training data) was installed
        for package in PACKAGES:
            for path in (REPO / package).rglob("*"):
                if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                    assert (installed / path.relative_to(REPO)).is_file(), f"not installed: {path.relative_to(REPO)}"


def test_the_package_takes_its_dependencies_from_requirements_txt():
    """pyproject.toml reads requirements.txt (no second list to drift); setuptools takes such a file only
    without pip options, and every line must be a pin."""
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dependencies = { file = ["requirements.txt"] }' in pyproject and '"dependencies"' in pyproject
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    pins = [line for line in lines if line]
    assert pins and all("==" in pin and not pin.startswith("-") for pin in pins), pins
