"""package.xml tells rosdep the truth: every dependency the code imports, with the right type.

The ROS packages are derived from the code's imports (AST), not from a hand-kept list: an
import that is neither the standard library, this package, a test helper nor a known Python
module is a ROS package of the same name. package.xml is read the way rosdep and colcon read
it (catkin_pkg, which also validates the format).
"""

from __future__ import annotations

import ast
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

pytestmark = pytest.mark.packaging

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fbsnet_ros"
# What runs on the robot: the package and the installed launch file.
RUNTIME_SOURCES = [REPO_ROOT / PACKAGE, REPO_ROOT / "launch"]
TEST_SOURCES = [REPO_ROOT / "test"]
# Python modules that are not ROS packages, by the rosdep key that installs them.
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "pytest": "python3-pytest",
    "catkin_pkg": "python3-catkin-pkg",
}
# Modules rosdep cannot install, behind the pip extras of setup.py (import name = pip name).
# They must only be imported where they are used, so the node starts without them.
PIP_EXTRA_MODULES = {"onnx", "onnxruntime", "openvino", "nncf", "matplotlib",
                     "cityscapesscripts"}


def python_files(roots: list[Path]) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*.py"))


def local_modules(roots: list[Path]) -> set[str]:
    """Test helpers (ros_helpers, bag_helpers) are imported by their file name."""
    return {path.stem for path in python_files(roots)}


def imports(path: Path) -> list[tuple[str, bool]]:
    """Top-level module of each absolute import, and whether it runs when the module loads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [(name.split(".")[0], id(node) in module_level) for name in names]
    return found


def third_party_imports(roots: list[Path]) -> dict[str, list[str]]:
    """Each module imported from outside the standard library and this repo -> its importers."""
    own = {PACKAGE, "__future__"} | local_modules(roots)
    found: dict[str, list[str]] = {}
    for path in python_files(roots):
        for module, _ in imports(path):
            if module not in sys.stdlib_module_names and module not in own:
                found.setdefault(module, []).append(os.path.relpath(path, REPO_ROOT))
    return found


def required_keys(roots: list[Path]) -> dict[str, list[str]]:
    """rosdep keys the imports need (ROS packages by their own name) -> importing files."""
    keys: dict[str, list[str]] = {}
    for module, importers in third_party_imports(roots).items():
        if module not in PIP_EXTRA_MODULES:
            keys.setdefault(ROSDEP_KEYS.get(module, module), []).extend(importers)
    return keys


@pytest.fixture(scope="module")
def package():
    return parse_package(str(REPO_ROOT / "package.xml"))


def names(dependencies) -> set[str]:
    return {dependency.name for dependency in dependencies}


def test_package_xml_is_a_valid_format_3_ament_python_package(package):
    package.validate()
    assert package.package_format == 3
    assert package.name == PACKAGE
    assert package.get_build_type() == "ament_python"
    assert (REPO_ROOT / "resource" / PACKAGE).is_file(), "ament index marker"


def test_setup_py_agrees_with_package_xml(package):
    """What setup.py installed (name, version) is what package.xml tells rosdep and colcon."""
    assert metadata.metadata(PACKAGE)["Name"].replace("-", "_") == package.name
    assert metadata.version(PACKAGE) == package.version


def test_every_runtime_import_is_an_exec_dependency(package):
    missing = {key: importers for key, importers in required_keys(RUNTIME_SOURCES).items()
               if key not in names(package.exec_depends)}
    assert missing == {}, "imported at run time, not an exec_depend/depend in package.xml"


def test_every_test_import_is_declared(package):
    declared = names(package.exec_depends) | names(package.test_depends)
    missing = {key: importers for key, importers in required_keys(TEST_SOURCES).items()
               if key not in declared}
    assert missing == {}, "imported by the tests, not a test_depend in package.xml"


def test_no_declared_dependency_is_unused(package):
    runtime = set(required_keys(RUNTIME_SOURCES))
    tests = set(required_keys(TEST_SOURCES))
    assert names(package.exec_depends) - runtime == set(), "exec dependency nothing imports"
    assert names(package.test_depends) - tests == set(), "test dependency no test imports"
    # A test-only package as an exec dependency would install pytest on every robot.
    assert names(package.exec_depends) & (tests - runtime) == set()
    # ament_python builds with setuptools alone: no build or buildtool dependency to declare.
    assert names(package.build_depends) == set() and names(package.buildtool_depends) == set()


def test_optional_backends_are_pip_extras_imported_only_where_used():
    # The installed metadata is what `pip install fbsnet_ros[openvino]` resolves.
    in_extras = {re.split(r"[\s<>=!~;\[]", line)[0] for line in metadata.requires(PACKAGE) or []
                 if "extra ==" in line}
    assert PIP_EXTRA_MODULES - in_extras == set(), "optional module without a pip extra"
    eager = [f"{path.relative_to(REPO_ROOT)}: {module}" for path in python_files(RUNTIME_SOURCES)
             for module, at_module_level in imports(path)
             if module in PIP_EXTRA_MODULES and at_module_level]
    assert eager == [], "an optional module imported at module level breaks the node without it"


def test_dependency_derivation_sees_a_new_ros_import(tmp_path):
    """A new `import vision_msgs` must surface as a required key, lazy or not."""
    (tmp_path / "node.py").write_text(
        "import os\nimport cv2\n\n\ndef labels():\n    from vision_msgs.msg import LabelInfo\n")
    assert set(required_keys([tmp_path])) == {"python3-opencv", "vision_msgs"}


# Only fbsnet_ros/ros may talk to ROS or bags, and only the CLI may import it.
ROS_MODULES = ("rclpy", "rosbags", "sensor_msgs", "std_msgs", "diagnostic_msgs",
               "rcl_interfaces", "rosgraph_msgs", "lifecycle_msgs", "vision_msgs",
               "fbsnet_ros.ros")


def imported_names(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_ros_imports_stay_at_the_edge():
    package = REPO_ROOT / PACKAGE
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] == "ros" or relative.name == "cli.py":
            continue
        bad = [name for name in imported_names(path)
               if any(name == root or name.startswith(root + ".") for root in ROS_MODULES)]
        if bad:
            offenders.append(f"{relative}: {bad}")
    assert offenders == []
    model_imports = set().union(*(imported_names(p) for p in (package / "model").glob("*.py")))
    assert not any(name.startswith(("fbsnet_ros.training", "fbsnet_ros.data",
                                    "fbsnet_ros.inference")) for name in model_imports)


def test_training_and_checkpoints_do_not_import_the_engine():
    """Training reads and writes checkpoints without loading the engine and every backend."""
    package = REPO_ROOT / PACKAGE
    training_imports = set().union(
        *(imported_names(p) for p in (package / "training").glob("*.py")))
    assert not [name for name in training_imports if name.startswith("fbsnet_ros.inference")]
    assert {name for name in imported_names(package / "checkpoint.py")
            if name.startswith("fbsnet_ros")} <= {"fbsnet_ros.model", "fbsnet_ros.errors",
                                                   "fbsnet_ros.data.classes"}
