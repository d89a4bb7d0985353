"""Test-side ROS plumbing: node processes started from the console script, and a probe node.

The probe is an rclpy node with its own context, spun in a background thread, that publishes
camera frames and records what the segmentation node sends back, keyed by header stamp.
"""

from __future__ import annotations

import array
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import yaml
from rcl_interfaces.msg import Parameter as ParameterMessage
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fbsnet_ros.ros.names import CAMERA_TOPIC, READY_LINE  # noqa: F401 (the tests import it here)
from fbsnet_ros.ros.processes import node_executable, stop_node_process

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS_FILE = REPO_ROOT / "config" / "segmentation.yaml"

# Discovery over localhost plus a torch import on two busy cores: be generous.
STARTUP_TIMEOUT_S = 60.0
ANSWER_TIMEOUT_S = 30.0
# Until the first answer proves DDS has matched both ways, a frame may be republished this often.
REPUBLISH_PERIOD_S = 3.0

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# How vision_msgs consumers subscribe to label info: the node's latched message reaches them.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
_BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "mono8": 1, "yuv422": 2}
# The Fast DDS profile the README tells users to load where large frames are published.
LARGE_FRAMES_PROFILE = REPO_ROOT / "config" / "fastdds_large_frames.xml"


def write_params_file(path: Path, parameters: dict) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return path


def cpu_weights_params_file(directory: Path, checkpoint: Path) -> Path:
    """Parameters for the given weights on the CPU whatever the machine, so diagnostics name
    the same hardware everywhere."""
    return write_params_file(directory / "weights.yaml",
                             {"weights": str(checkpoint), "device": "cpu"})


def remapped(namespace: str, camera_topic: str) -> list[str]:
    """The launch file's namespace and camera_topic arguments, as ros-args."""
    return ["-r", f"__ns:={namespace}", "-r", f"{CAMERA_TOPIC}:={camera_topic}"]


def reliable_subscription_override(topic: str) -> dict:
    """The qos_overrides entry that makes the node's subscription on `topic` reliable."""
    return {"qos_overrides": {topic: {"subscription": {"reliability": "reliable"}}}}


class NodeProcess:
    """The segmentation node run from its console script, output captured in a file."""

    def __init__(self, log_path: Path, params_files: list[Path], ros_arguments=(),
                 environment: dict | None = None, executable: str = "segmentation_node",
                 arguments=()) -> None:
        command = [node_executable(executable), *arguments, "--ros-args"]
        for params_file in (DEFAULT_PARAMS_FILE, *params_files):
            command += ["--params-file", str(params_file)]
        command += list(ros_arguments)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(environment or {})})

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                raise AssertionError(f"node exited ({self.process.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from the node in {timeout} s:\n{self.output}")
            time.sleep(0.2)

    def wait(self, timeout: float = STARTUP_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exception) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGINT, then SIGKILL if the node does not go; for teardown, never fails."""
        stop_node_process(self.process)
        self._log.close()


def stamp_key(header) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


def has_stamp(stamp: tuple[int, int]):
    """A TopicRecorder.wait_for predicate: the message with this header stamp."""
    return lambda message: stamp_key(message.header) == stamp


def wait_for_answer(recorder: TopicRecorder, stamp: tuple[int, int], republish):
    """The message on `recorder` with this stamp; `republish()` sends the frame again every
    REPUBLISH_PERIOD_S while discovery may have lost it."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = recorder.wait_for(has_stamp(stamp), timeout=REPUBLISH_PERIOD_S)
        if answer is not None:
            return answer
        republish()
    raise AssertionError(f"nothing on {recorder.subscription.topic_name} for frame {stamp} "
                         f"in {ANSWER_TIMEOUT_S} s")


class TopicRecorder:
    """Every message on one topic, findable by header stamp."""

    def __init__(self, node: Node, message_type, topic: str, qos: QoSProfile = RELIABLE) -> None:
        self.messages: list = []
        self._condition = threading.Condition()
        self.subscription = node.create_subscription(message_type, topic, self._record, qos)

    def _record(self, message) -> None:
        with self._condition:
            self.messages.append(message)
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self.messages)

    def wait_for(self, predicate, timeout: float = ANSWER_TIMEOUT_S, skip: int = 0):
        """The first message satisfying predicate, ignoring the first `skip`; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for message in self.messages[skip:]:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)

    def with_stamp(self, stamp: tuple[int, int]) -> list:
        with self._condition:
            return [message for message in self.messages if stamp_key(message.header) == stamp]


class RosProbe:
    """A test-side node in its own context, spinning in a background thread."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()
        self._next_stamp = 1

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass  # close() shut the context down

    def publisher(self, message_type, topic: str):
        return self.node.create_publisher(message_type, topic, RELIABLE)

    def recorder(self, message_type, topic: str, qos: QoSProfile = RELIABLE) -> TopicRecorder:
        return TopicRecorder(self.node, message_type, topic, qos)

    def new_stamp(self, message) -> tuple[int, int]:
        """Give the message a stamp no earlier message had, and return it."""
        message.header.stamp.sec, message.header.stamp.nanosec = self._next_stamp, 1000
        self._next_stamp += 1
        return stamp_key(message.header)

    def call(self, service_type, service: str, request, timeout: float = ANSWER_TIMEOUT_S):
        """Call a service once it is there; its response."""
        client = self.node.create_client(service_type, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"{service} not available")
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            if not done.wait(timeout):
                raise AssertionError(f"no answer from {service}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, node_name: str, name: str, value) -> object:
        """Set one parameter through the node's service; returns the SetParametersResult."""
        request = SetParameters.Request(
            parameters=[ParameterMessage(name=name, value=_parameter_value(value))])
        return self.call(SetParameters, f"{node_name}/set_parameters", request).results[0]

    def __enter__(self) -> RosProbe:
        return self

    def __exit__(self, *exception) -> None:
        self.close()

    def close(self) -> None:
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()


def subscription_reliabilities(node: Node, topic: str) -> list:
    """The reliability of every subscription on topic, as the ROS graph reports it."""
    return [info.qos_profile.reliability for info in node.get_subscriptions_info_by_topic(topic)]


def wait_until(condition, timeout: float = STARTUP_TIMEOUT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _parameter_value(value) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    raise TypeError(f"no parameter type for {value!r}")


def camera_image(height: int, width: int, encoding: str, frame_id: str = "camera",
                 row_padding: int = 0, seed: int = 0) -> Image:
    """A random camera frame; rows padded by `row_padding` bytes to exercise `step`."""
    step = width * _BYTES_PER_PIXEL[encoding] + row_padding
    pixels = np.random.default_rng(seed).integers(0, 256, size=height * step, dtype=np.uint8)
    image = Image(height=height, width=width, encoding=encoding, step=step)
    image.header.frame_id = frame_id
    image.data = array.array("B", pixels.tobytes())
    return image
