"""The shipped parameter file and launch file agree with the node, checked without ros2 launch.

launch and launch_ros are not installable from PyPI, so the launch file is read as Python
syntax (names it imports from this package resolved by importing them); the parameter file is
compared with what a real node instance declares.
"""

from __future__ import annotations

import ast
import importlib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.node import Node
from rclpy.parameter import Parameter

from fbsnet_ros.ros.node_base import parameter_declarations
from fbsnet_ros.ros.segmentation_node import SegmentationNode

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO_ROOT / "config" / "segmentation.yaml"
LAUNCH_FILE = REPO_ROOT / "launch" / "segmentation.launch.py"
LARGE_FRAMES_PROFILE = REPO_ROOT / "config" / "fastdds_large_frames.xml"
FASTDDS_NAMESPACE = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"
# A 1920x1080 rgb8 frame, the largest camera frame the README promises to carry.
LARGEST_FRAME_BYTES = 1920 * 1080 * 3


def _params_file_values() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())["/**"]["ros__parameters"]


@pytest.fixture(scope="module")
def declared_parameter_names(random_checkpoint) -> set[str]:
    """What a node started with the shipped file declares, beyond every rclpy node's own."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        bare = Node("bare", context=context)
        node = SegmentationNode(
            context=context, cli_args=["--ros-args", "--params-file", str(PARAMS_FILE)],
            parameter_overrides=[Parameter("weights", value=str(random_checkpoint))])
        try:
            own = set(node.list_parameters([], 0).names) - set(bare.list_parameters([], 0).names)
        finally:
            node.destroy_node()
            bare.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    # The QoS overrides are declared by rclpy per topic, not by the node's table.
    return {name for name in own if not name.startswith("qos_overrides.")}


def test_params_file_sets_exactly_the_declared_parameters(declared_parameter_names):
    in_file = set(_params_file_values())
    assert in_file - declared_parameter_names == set(), "in the file, not declared"
    assert declared_parameter_names - in_file == set(), "declared, missing from the file"


def test_params_file_shows_the_node_defaults():
    in_file = _params_file_values()
    for name, default, _ in parameter_declarations():
        # A parameter declared by type alone defaults to unset, written [] in the file.
        expected = [] if isinstance(default, Parameter.Type) else default
        assert in_file[name] == expected, name


class LaunchFile:
    """The launch file's calls, with arguments reduced to plain values where they are literal."""

    def __init__(self, path: Path) -> None:
        tree = self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants = {
            target.id: statement.value.value
            for statement in tree.body if isinstance(statement, ast.Assign)
            and isinstance(statement.value, ast.Constant)
            for target in statement.targets if isinstance(target, ast.Name)
        }
        # Names imported from this package (its one home of ROS names) are its values.
        self.constants.update({
            alias.asname or alias.name:
                getattr(importlib.import_module(statement.module), alias.name)
            for statement in tree.body if isinstance(statement, ast.ImportFrom)
            and (statement.module or "").startswith("fbsnet_ros.")
            for alias in statement.names
        })
        self.calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]

    def value(self, node: ast.AST):
        """Literals, module constants, lists/tuples of them; other calls as (name, *args)."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        if isinstance(node, ast.List):
            return [self.value(element) for element in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(element) for element in node.elts)
        if isinstance(node, ast.Call):
            return (_call_name(node), *(self.value(argument) for argument in node.args))
        return ast.dump(node)

    def calls_to(self, name: str) -> list[ast.Call]:
        return [call for call in self.calls if _call_name(call) == name]

    def keywords(self, call: ast.Call) -> dict:
        return {keyword.arg: self.value(keyword.value) for keyword in call.keywords}


def _call_name(call: ast.Call) -> str:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")


@pytest.fixture(scope="module")
def launch_file() -> LaunchFile:
    return LaunchFile(LAUNCH_FILE)


def _declared_arguments(launch_file: LaunchFile) -> dict:
    return {launch_file.value(call.args[0]): launch_file.keywords(call)
            for call in launch_file.calls_to("DeclareLaunchArgument")}


def test_launch_file_declares_its_arguments(launch_file):
    arguments = _declared_arguments(launch_file)

    assert set(arguments) == {"params_file", "namespace", "camera_topic", "camera_info_topic",
                              "managed", "autostart", "large_frames"}
    assert arguments["namespace"]["default_value"] == ""
    # Off unless asked: a 64 MB shared-memory segment per process is not every machine's.
    assert arguments["large_frames"]["default_value"] == "false"
    assert arguments["camera_topic"]["default_value"] == "/camera/image_raw"
    # The plain node by default; a managed one configures and activates itself unless told.
    assert arguments["managed"]["default_value"] == "false"
    assert arguments["autostart"]["default_value"] == "true"
    share_directory_calls = launch_file.calls_to("get_package_share_directory")
    assert [launch_file.value(call.args[0]) for call in share_directory_calls] == ["fbsnet_ros"]
    assert {"config", "segmentation.yaml"} <= {
        launch_file.value(argument) for call in launch_file.calls_to("join")
        for argument in call.args}


def _evaluate_camera_info_default(launch_file: LaunchFile, camera_topic: str) -> str:
    """camera_info_topic's default for a camera_topic, evaluated as PythonExpression does."""
    (expression,) = launch_file.calls_to("PythonExpression")
    parts = [camera_topic if part == ("LaunchConfiguration", "camera_topic") else part
             for part in launch_file.value(expression.args[0])]
    return eval("".join(parts))  # the launch file's own expression, as launch evaluates it


def test_camera_info_follows_the_camera_topic_unless_overridden(launch_file):
    (default,) = _declared_arguments(launch_file)["camera_info_topic"]["default_value"]
    assert default[0] == "PythonExpression"
    assert _evaluate_camera_info_default(launch_file, "/front/image_raw") == "/front/camera_info"
    assert _evaluate_camera_info_default(launch_file, "/camera/image_raw") == (
        "/camera/camera_info")


def _node_settings(launch_file: LaunchFile) -> dict:
    (settings,) = [statement.value for statement in ast.walk(launch_file.tree)
                   if isinstance(statement, ast.Assign)
                   and getattr(statement.targets[0], "id", "") == "node_settings"]
    return {launch_file.value(key): launch_file.value(value)
            for key, value in zip(settings.keys, settings.values)}


def test_launch_file_starts_one_node_with_its_params_and_camera_remappings(launch_file):
    nodes = {launch_file.keywords(call)["executable"]: launch_file.keywords(call)
             for call in launch_file.calls_to("Node")}
    settings = _node_settings(launch_file)

    assert set(nodes) == {"segmentation_node", "segmentation_lifecycle_node"}
    assert nodes["segmentation_node"]["condition"] == (
        "UnlessCondition", ("LaunchConfiguration", "managed"))
    assert nodes["segmentation_lifecycle_node"]["condition"] == (
        "IfCondition", ("LaunchConfiguration", "managed"))
    assert nodes["segmentation_lifecycle_node"]["arguments"] == [
        "--autostart", ("LaunchConfiguration", "autostart")]
    assert (settings["package"], settings["name"]) == ("fbsnet_ros", "fbsnet")
    assert settings["namespace"] == ("LaunchConfiguration", "namespace")
    assert settings["parameters"] == [("LaunchConfiguration", "params_file")]
    assert settings["remappings"] == [
        ("/camera/image_raw", ("LaunchConfiguration", "camera_topic")),
        ("/camera/camera_info", ("LaunchConfiguration", "camera_info_topic"))]
    assert settings["output"] == "screen"


def test_large_frames_sets_the_fastdds_profile_for_the_launched_processes(launch_file):
    (set_environment,) = launch_file.calls_to("SetEnvironmentVariable")
    name, value = set_environment.args
    condition = launch_file.keywords(set_environment)["condition"]

    # One action per name Fast DDS reads (Kilted's and Jazzy's), from compat's one list.
    assert isinstance(name, ast.Name) and name.id == "variable"
    loops = [node for node in ast.walk(launch_file.tree) if isinstance(node, ast.comprehension)]
    assert any(isinstance(loop.iter, ast.Name) and loop.iter.id == "FASTDDS_PROFILES_FILE_VARIABLES"
               for loop in loops)
    assert isinstance(value, ast.Name) and value.id == "large_frames_profile"
    (profile_path,) = [call for call in launch_file.calls_to("join")
                       if "fastdds_large_frames.xml" in map(launch_file.value, call.args)]
    assert [launch_file.value(argument) for argument in profile_path.args][1:] == [
        "config", "fastdds_large_frames.xml"]
    assert condition == ("IfCondition", ("LaunchConfiguration", "large_frames"))


def test_large_frames_profile_replaces_the_512_kb_shared_memory_and_keeps_udp():
    root = ElementTree.parse(LARGE_FRAMES_PROFILE).getroot()
    descriptors = {
        descriptor.findtext(f"{FASTDDS_NAMESPACE}transport_id"): descriptor
        for descriptor in root.iter(f"{FASTDDS_NAMESPACE}transport_descriptor")}
    participant = root.find(f"{FASTDDS_NAMESPACE}participant")
    rtps = participant.find(f"{FASTDDS_NAMESPACE}rtps")
    used = [element.text for element in rtps.iter(f"{FASTDDS_NAMESPACE}transport_id")]

    # Loaded by FASTDDS_DEFAULT_PROFILES_FILE only if it is the default participant profile.
    assert participant.get("is_default_profile") == "true"
    assert rtps.findtext(f"{FASTDDS_NAMESPACE}useBuiltinTransports") == "false"
    types = {descriptors[transport].findtext(f"{FASTDDS_NAMESPACE}type") for transport in used}
    assert types == {"SHM", "UDPv4"}  # UDPv4: peers on other machines still reach it
    (shared_memory,) = [descriptors[transport] for transport in used
                        if descriptors[transport].findtext(f"{FASTDDS_NAMESPACE}type") == "SHM"]
    segment_size = int(shared_memory.findtext(f"{FASTDDS_NAMESPACE}segment_size"))
    assert segment_size >= 4 * LARGEST_FRAME_BYTES  # a few 1080p frames in flight
