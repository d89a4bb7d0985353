"""ament's Python linters as the ROS 2 package templates run them under `colcon test`, and ruff.

Both are configured from setup.cfg [flake8], whose ignores match ruff.toml's, so the three
tools report the same code as clean or not. No copyright check: the sources carry no headers
(package.xml's license tag is the licence statement).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ament_flake8.main import main_with_errors as ament_flake8
from ament_pep257.main import main as ament_pep257

pytestmark = pytest.mark.linter

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = REPO_ROOT / "setup.cfg"
LINTED = [str(REPO_ROOT / name) for name in ("fbsnet_ros", "launch", "test", "bench", "setup.py")]


def flake8_ignores() -> list[str]:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    return [code.strip() for code in config["flake8"]["extend-ignore"].split(",") if code.strip()]


def docstring_ignores() -> list[str]:
    return sorted(code for code in flake8_ignores() if code.startswith("D"))


def test_flake8():
    rc, errors = ament_flake8(argv=["--config", str(SETUP_CFG), *LINTED])
    assert rc == 0, f"{len(errors)} flake8 errors:\n" + "\n".join(errors)


def test_pep257(capsys):
    rc = ament_pep257(argv=[*LINTED, "--ignore", *docstring_ignores()])
    # It prints a "checking" line per file on stdout and the problems on stderr.
    assert rc == 0, capsys.readouterr().err[-4000:]


def test_ruff():
    ruff = Path(sys.executable).parent / "ruff"
    found = str(ruff) if ruff.exists() else shutil.which("ruff")
    if found is None:
        # A ROS user's `colcon test` has the ament linters above; our venv and CI have ruff.
        if os.environ.get("CI"):
            pytest.fail("ruff is not installed; `make install` installs requirements-dev.txt")
        pytest.skip("ruff is not installed (pip install ruff)")
    result = subprocess.run([found, "check", *LINTED], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_ignores_the_same_docstring_rules():
    """ruff.toml and setup.cfg each list the docstring exceptions; they must not drift apart."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check itself is not 3.10 code
    ruff = tomllib.loads((REPO_ROOT / "ruff.toml").read_text())["lint"]
    assert "D" in ruff["select"]
    assert sorted(code for code in ruff["ignore"] if code.startswith("D")) == docstring_ignores()
