"""Packaging: a real colcon build installs what `ros2 launch`/`ros2 run` need; style; imports."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; `make install` installs requirements-dev.txt")
    return found


def test_colcon_build_installs_the_ros_layout(tmp_path):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [tool("colcon"), "--log-base", str(tmp_path / "log"), "build",
         "--base-paths", str(REPO_ROOT), "--build-base", str(tmp_path / "build"),
         "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    prefix = tmp_path / "install" / "fbsnet_ros"
    share = prefix / "share" / "fbsnet_ros"
    expected = [
        prefix / "share" / "ament_index" / "resource_index" / "packages" / "fbsnet_ros",
        share / "package.xml",
        share / "launch" / "segmentation.launch.py",
        share / "config" / "segmentation.yaml",
        prefix / "lib" / "fbsnet_ros" / "segmentation_node",
        prefix / "lib" / "fbsnet_ros" / "fbsnet-ros",
    ]
    missing = [str(path.relative_to(prefix)) for path in expected if not path.exists()]
    assert missing == []
    shipped = REPO_ROOT / "fbsnet_ros" / "weights" / "fbsnet_camvid.pt"
    if shipped.exists():
        installed = list(prefix.glob("lib/python*/site-packages/fbsnet_ros/weights/*.pt"))
        assert [path.name for path in installed] == ["fbsnet_camvid.pt"]


def test_package_xml_declares_runtime_and_test_dependencies():
    text = (REPO_ROOT / "package.xml").read_text()
    for key in ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy",
                "python3-opencv", "python3-torch", "python3-pytest", "ament_flake8",
                "ament_pep257", "<build_type>ament_python</build_type>", 'format="3"'):
        assert key in text, key


def test_ruff_is_clean():
    result = subprocess.run([tool("ruff"), "check", "fbsnet_ros", "test", "launch", "setup.py",
                             "bench"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


# Only fbsnet_ros/ros may talk to ROS or bags, and only the CLI may import it.
ROS_MODULES = ("rclpy", "rosbags", "sensor_msgs", "std_msgs", "diagnostic_msgs",
               "rcl_interfaces", "fbsnet_ros.ros")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_ros_imports_stay_at_the_edge():
    package = REPO_ROOT / "fbsnet_ros"
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] == "ros" or relative.name == "cli.py":
            continue
        bad = [name for name in imported_modules(path)
               if any(name == root or name.startswith(root + ".") for root in ROS_MODULES)]
        if bad:
            offenders.append(f"{relative}: {bad}")
    assert offenders == []
    model_imports = set().union(*(imported_modules(p) for p in (package / "model").glob("*.py")))
    assert not any(name.startswith(("fbsnet_ros.training", "fbsnet_ros.data",
                                    "fbsnet_ros.inference")) for name in model_imports)
