"""colcon as ROS users run it: build, find the installed files through the ament index, test.

Not part of `colcon test`'s own quick subset (it runs colcon itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PACKAGE = "fbsnet_ros"
EXECUTABLES = ["segmentation_node", "segmentation_lifecycle_node", "fbsnet-ros"]
COLCON_TEST_MARKERS = "packaging or linter"


def tool(name: str) -> str:
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; `make install` installs requirements-dev.txt")
    return found


def colcon(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [tool("colcon"), "--log-base", str(workspace / "log"), *args, "--base-paths",
         str(REPO_ROOT), "--build-base", str(workspace / "build"), "--install-base",
         str(workspace / "install"), "--packages-select", PACKAGE],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("ros2_ws")
    colcon(workspace, "build")
    return workspace


def sourced_env(workspace: Path) -> dict[str, str]:
    """What `source install/setup.bash` gives this package (isolated install layout)."""
    prefix = workspace / "install" / PACKAGE
    site_packages = next(prefix.glob("lib/python3*/site-packages"))
    return {**os.environ, "AMENT_PREFIX_PATH": str(prefix), "PYTHONPATH": str(site_packages)}


def test_colcon_build_installs_the_ros_layout(workspace):
    prefix = workspace / "install" / PACKAGE
    share = prefix / "share" / PACKAGE
    expected = [
        prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE,
        share / "package.xml",
        share / "launch" / "segmentation.launch.py",
        share / "config" / "segmentation.yaml",
        *(prefix / "lib" / PACKAGE / name for name in EXECUTABLES),
    ]
    shipped_config = [path.relative_to(REPO_ROOT) for path in (REPO_ROOT / "config").rglob("*")
                      if path.is_file()]
    expected += [share / path for path in shipped_config]
    missing = [str(path.relative_to(prefix)) for path in expected if not path.exists()]
    assert missing == []
    shipped = REPO_ROOT / PACKAGE / "weights" / "fbsnet_camvid.pt"
    if shipped.exists():
        installed = list(prefix.glob("lib/python*/site-packages/fbsnet_ros/weights/*.pt"))
        assert [path.name for path in installed] == ["fbsnet_camvid.pt"]


def test_ros_finds_the_installed_launch_file_config_and_executables(workspace):
    """The lookups `ros2 launch` / `ros2 run` and the demo make, in a sourced workspace."""
    probe = (
        "import os, fbsnet_ros\n"
        "from ament_index_python.packages import get_package_prefix, get_package_share_directory\n"
        "from fbsnet_ros.ros.demo import default_params_file\n"
        "print(get_package_share_directory('fbsnet_ros'))\n"
        "prefix = get_package_prefix('fbsnet_ros')\n"
        # ros2 run lists the executable files in <prefix>/lib/<package>.
        "lib = os.path.join(prefix, 'lib', 'fbsnet_ros')\n"
        "print(sorted(f for f in os.listdir(lib) if os.access(os.path.join(lib, f), os.X_OK)))\n"
        "print(default_params_file())\n"
        "print(os.path.dirname(fbsnet_ros.__file__))\n")
    # Run from the workspace: `python -c` puts its working directory first on sys.path.
    result = subprocess.run([sys.executable, "-c", probe], cwd=workspace,
                            env=sourced_env(workspace), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    share, executables, params_file, package_dir = result.stdout.splitlines()[-4:]
    prefix = workspace / "install" / PACKAGE
    assert Path(share) == prefix / "share" / PACKAGE
    for shipped in ("launch/segmentation.launch.py", "config/segmentation.yaml"):
        assert (Path(share) / shipped).read_bytes() == (REPO_ROOT / shipped).read_bytes()
    assert Path(params_file) == Path(share) / "config" / "segmentation.yaml"
    assert executables == str(sorted(EXECUTABLES))
    # The installed copy is imported, not this checkout (installed editable into the venv).
    assert Path(package_dir).is_relative_to(prefix)


def test_installed_console_script_runs(workspace):
    script = workspace / "install" / PACKAGE / "lib" / PACKAGE / "fbsnet-ros"
    result = subprocess.run([str(script), "--help"], cwd=workspace, env=sourced_env(workspace),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage" in result.stdout.lower()


def junit_tests(path: Path) -> set[str]:
    """'test_file.py::test_name' for each test case in a pytest JUnit report."""
    cases = ET.parse(path).getroot().iter("testcase")
    return {f"{case.get('classname').split('.')[-1]}.py::{case.get('name')}" for case in cases}


def test_colcon_test_runs_only_the_quick_marked_subset(workspace):
    colcon(workspace, "test", "--event-handlers", "console_direct-")
    ran = junit_tests(workspace / "build" / PACKAGE / "pytest.xml")
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", COLCON_TEST_MARKERS,
         "test"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    marked = {line.split("/")[-1] for line in collected.stdout.splitlines() if "::" in line}
    assert marked, collected.stdout[-2000:]
    assert ran == marked
