"""Humble runs Python 3.10: no 3.11-only syntax or library call may creep into the package.

ruff's target-version only shapes its rewrites; it does not know which stdlib names a version
lacks (typing.Self passed it). vermin does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO_ROOT = Path(__file__).resolve().parents[1]
# Everything that runs on a robot or in the tests; --eval-annotations also reads the
# annotations that `from __future__ import annotations` leaves unevaluated.
CHECKED_PATHS = ["fbsnet_ros", "launch", "test", "bench", "setup.py"]
TARGET = "3.10-"


def vermin(*paths: str | Path) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / "vermin"
    found = str(executable) if executable.exists() else shutil.which("vermin")
    if found is None:
        pytest.fail("vermin is not installed; `make install` installs requirements-dev.txt")
    command = [found, "--no-tips", "--violations", "--eval-annotations", "-t=" + TARGET]
    return subprocess.run([*command, *map(str, paths)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_package_runs_on_python_310():
    result = vermin(*CHECKED_PATHS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_check_catches_a_311_only_name(tmp_path):
    """The regression that started this: typing.Self is 3.11+, and the check must say so."""
    offender = tmp_path / "uses_self.py"
    offender.write_text("from typing import Self\n\n\ndef clone(x) -> Self:\n    return x\n")
    result = vermin(offender)
    assert result.returncode != 0
    assert "typing.Self" in result.stdout
