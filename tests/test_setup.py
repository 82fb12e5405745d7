"""The test setup cannot hide a missing tool: scripts/test-tools.sh (run by `setup.sh --test`) exits non-zero
naming what is missing and why it could not install it, and under CI=true a test that needs a missing program
fails (conftest.need_tool) where it would skip on a machine without it. Checked with PATH lacking espeak-ng;
no apt-get runs here (fake `id` and `apt-get` on PATH)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "scripts" / "test-tools.sh"
def _programs_in_the_tools_list() -> tuple[str, ...]:
    """The programs scripts/test-tools.sh checks (its TOOLS table; files it checks are left as they are)."""
    table = TOOLS.read_text().split('TOOLS="', 1)[1].split('"', 1)[0]
    return tuple(line.split()[0] for line in table.splitlines() if line.strip() and not line.startswith("/"))


NEEDED = _programs_in_the_tools_list()


def path_without(tmp_path: Path, hidden: str, fakes: dict[str, str] | None = None) -> str:
    """A PATH of one folder: links to bash, id and every test tool found here but `hidden`, plus fake scripts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "id", "dirname", *NEEDED):
        found = shutil.which(name)
        if name == hidden:
            continue
        if found:
            (bin_dir / name).symlink_to(found)
        else:  # absent on this machine too: faked present, so that only `hidden` is missing
            fakes = {name: "exit 0", **(fakes or {})}
    for name, script in (fakes or {}).items():
        (bin_dir / name).unlink(missing_ok=True)
        (bin_dir / name).write_text("#!/bin/sh\n" + script + "\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def run_tools(tmp_path, *args, hidden="espeak-ng", fakes=None):
    env = {**os.environ, "PATH": path_without(tmp_path, hidden, fakes)}
    return subprocess.run(["/bin/bash", str(TOOLS), *args], capture_output=True, text=True, env=env, timeout=60)


def test_the_check_names_the_missing_tool(tmp_path):
    done = run_tools(tmp_path, "--check")
    assert done.returncode == 3, done
    assert done.stderr.strip() == "error: test tools missing: espeak-ng (apt-get install espeak-ng)"


def test_without_root_setup_fails_and_says_why(tmp_path):
    done = run_tools(tmp_path, fakes={"id": "echo 1000"})
    assert done.returncode == 3, done
    assert "test tools missing: espeak-ng; installing them needs root: sudo apt-get install espeak-ng" in done.stderr


def test_a_failing_apt_get_fails_the_setup(tmp_path):
    done = run_tools(tmp_path, fakes={"id": "echo 0", "apt-get": "exit 100"})
    assert done.returncode == 3, done
    assert "apt-get install espeak-ng failed; test tools missing: espeak-ng" in done.stderr


def test_a_node_package_names_nodejs(tmp_path):
    done = run_tools(tmp_path, "--check", hidden="node")
    assert done.returncode == 3 and "test tools missing: node (apt-get install nodejs)" in done.stderr, done


def ci_checkout(tmp_path: Path) -> Path:
    """The real .ci/run, test.sh and scripts/test-tools.sh in a bare copy of the layout, with a setup.sh that
    only runs the tools step (no pip, no weights: the shared .venv is left alone) and a .venv/bin/python that
    says it ran pytest."""
    root = tmp_path / "checkout"
    for path in (".ci/run", "test.sh", "scripts/test-tools.sh"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, root / path)
    (root / "scripts" / "setup.sh").write_text('#!/usr/bin/env bash\nset -euo pipefail\ncd "$(dirname "$0")/.."\n'
                                               "scripts/test-tools.sh\n")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\necho pytest ran \"$@\"\n")
    for path in ("scripts/setup.sh", ".venv/bin/python"):
        (root / path).chmod(0o755)
    return root


@pytest.mark.parametrize("ci", ["true", ""])
def test_ci_run_stops_at_a_missing_tool_and_says_which(tmp_path, ci):
    """CI=true bash .ci/run on a machine without espeak-ng (apt-get failing): the run fails naming it, before
    pytest; outside CI test.sh goes on (those tests then skip, with the reason)."""
    root = ci_checkout(tmp_path)
    env = {**os.environ, "CI": ci, "PATH": path_without(tmp_path, "espeak-ng", {"id": "echo 0", "apt-get": "exit 100"})}
    done = subprocess.run(["/bin/bash", str(root / ".ci" / "run")], capture_output=True, text=True, env=env,
                          timeout=60)
    assert "error: apt-get install espeak-ng failed; test tools missing: espeak-ng" in done.stderr, done
    if ci:
        assert done.returncode == 3 and "pytest ran" not in done.stdout, done
    else:
        assert done.returncode == 0 and "pytest ran -m pytest -p no:cacheprovider" in done.stdout, done
        assert "going on without them" in done.stderr


NEEDS_ESPEAK = """
import pytest

@pytest.mark.needs_tool("espeak-ng", hint="apt-get install espeak-ng")
def test_speaks():
    pass
"""


@pytest.mark.parametrize("ci", ["true", ""])
def test_under_ci_a_test_that_needs_a_missing_tool_fails(tmp_path, ci):
    (tmp_path / "test_needs_espeak.py").write_text(NEEDS_ESPEAK)
    env = {**os.environ, "CI": ci, "PATH": path_without(tmp_path, "espeak-ng"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"), "--rootdir", str(tmp_path),
                           "-p", "conftest", "-p", "no:cacheprovider", "-rfEs", str(tmp_path / "test_needs_espeak.py")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    reason = "espeak-ng not installed (apt-get install espeak-ng)"
    if ci:
        assert done.returncode == 1, done.stdout
        assert "1 error" in done.stdout and f"CI=true and {reason}" in done.stdout, done.stdout
    else:
        assert done.returncode == 0, done.stdout
        assert "1 skipped" in done.stdout and reason in done.stdout, done.stdout


def test_the_vendored_sillytavern_can_come_from_the_environment(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setenv("TALKINGHEAD_SILLYTAVERN_TARBALL", str(tmp_path / "st.tar.gz"))
    assert conftest.sillytavern_tarball() == tmp_path / "st.tar.gz"
    monkeypatch.delenv("TALKINGHEAD_SILLYTAVERN_TARBALL")
    assert conftest.sillytavern_tarball() == REPO.parent / "shared" / "vendor" / "sillytavern-1.12.6.tar.gz"
