"""The managed node end to end: segmentation_lifecycle_node in a process, driven over real DDS.

Transitions go through the standard /fbsnet/change_state and /fbsnet/get_state services; each
state is checked for what it serves (camera subscription, outputs, labels) and what it does
not. The same process also shows label info to a late subscriber and camera_info passthrough.
"""

from __future__ import annotations

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import ReliabilityPolicy
from ros_helpers import (
    LATCHED,
    NodeProcess,
    RosProbe,
    camera_image,
    has_stamp,
    stamp_key,
    subscription_reliabilities,
    wait_for_answer,
    wait_until,
)
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import LabelInfo

from fbsnet_ros.data.classes import CAMVID_CLASS_NAMES
from fbsnet_ros.ros.names import CAMERA_INFO_TOPIC, CAMERA_TOPIC, NODE_NAME

NODE = f"/{NODE_NAME}"
EXECUTABLE = "segmentation_lifecycle_node"
# A camera-sized frame (over Fast DDS's 512 KB best-effort limit: the input must follow the
# camera's reliable publisher).
HEIGHT, WIDTH = 480, 640
# How long a frame may go unanswered before "not served" is believed.
NOT_SERVED_WAIT_S = 3.0
# Frames sent with a camera_info before one must come back with it, and how long each waits.
CAMERA_INFO_TRIES = 5
CAMERA_INFO_WAIT_S = 3.0


class ManagedNode:
    """The probe's view of the lifecycle node: its services, its camera and its outputs."""

    def __init__(self, probe: RosProbe) -> None:
        self.probe = probe
        self.camera = probe.publisher(Image, CAMERA_TOPIC)
        self.camera_info = probe.publisher(CameraInfo, CAMERA_INFO_TOPIC)
        self.labels = probe.recorder(Image, f"{NODE}/labels")
        self.camera_info_out = probe.recorder(CameraInfo, f"{NODE}/camera_info")

    def state(self) -> int:
        return self.probe.call(GetState, f"{NODE}/get_state", GetState.Request()).current_state.id

    def change(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.probe.call(ChangeState, f"{NODE}/change_state", request).success

    def subscribed(self) -> bool:
        return self.probe.node.count_subscribers(CAMERA_TOPIC) > 0

    def outputs_published(self) -> bool:
        return self.probe.node.count_publishers(f"{NODE}/labels") > 0

    def wait_serving(self) -> None:
        node, topic = self.probe.node, CAMERA_TOPIC
        wait_until(lambda: subscription_reliabilities(node, topic) == [ReliabilityPolicy.RELIABLE],
                   what="the node's input to follow the reliable camera")
        wait_until(self.outputs_published, what="the labels publisher")
        wait_until(lambda: self.camera_info.get_subscription_count() > 0,
                   what="the node's camera_info subscription")

    def publish(self, frame: Image, info: CameraInfo | None = None) -> tuple[int, int]:
        stamp = self.probe.new_stamp(frame)
        if info is not None:
            info.header = frame.header
            self.camera_info.publish(info)
        self.camera.publish(frame)
        return stamp

    def request(self, frame: Image, info: CameraInfo | None = None) -> Image:
        stamp = self.publish(frame, info)
        return wait_for_answer(self.labels, stamp, lambda: self.camera.publish(frame))

    def request_with_camera_info(self, frame: Image) -> tuple[Image, CameraInfo]:
        """Frames with their camera_info, as cameras stream them, until labels come back with
        their camera_info: the node reads camera_info best effort, so one sent before the
        node's side of DDS has matched the probe is lost, like a dropped frame."""
        for _ in range(CAMERA_INFO_TRIES):
            labels = self.request(frame, _calibration())
            stamp = stamp_key(labels.header)
            info = self.camera_info_out.wait_for(has_stamp(stamp), timeout=CAMERA_INFO_WAIT_S)
            if info is not None:
                return labels, info
        raise AssertionError(f"no ~/camera_info for {CAMERA_INFO_TRIES} frames with one")

    def not_served(self, frame: Image) -> bool:
        stamp = self.publish(frame)
        return self.labels.wait_for(has_stamp(stamp), timeout=NOT_SERVED_WAIT_S) is None


def _calibration() -> CameraInfo:
    return CameraInfo(height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                      d=[0.1, -0.2, 0.0, 0.0, 0.0],
                      k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])


def test_every_transition_and_what_each_state_serves(
        weights_params_file, probe, tmp_path, random_checkpoint):
    missing = tmp_path / "missing.pt"
    with NodeProcess(tmp_path / "node.log", [weights_params_file],
                     executable=EXECUTABLE) as process:
        node = ManagedNode(probe)
        frame = camera_image(HEIGHT, WIDTH, "rgb8", frame_id="front_camera")

        # Unconfigured at start: nothing loaded, not subscribed, no outputs.
        assert node.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert not node.subscribed() and not node.outputs_published()

        # Model settings change while unconfigured and apply at the next configure; a bad one
        # fails the transition with one line and leaves the node unconfigured.
        assert probe.set_parameter(NODE, "weights", str(missing)).successful
        assert not node.change(Transition.TRANSITION_CONFIGURE)
        assert node.state() == State.PRIMARY_STATE_UNCONFIGURED
        process.wait_for_output(f"configure failed: parameter 'weights': {missing}")
        failure_line = next(line for line in process.output.splitlines()
                            if "configure failed" in line)
        assert "Traceback" not in process.output and str(missing) in failure_line
        assert probe.set_parameter(NODE, "weights", str(random_checkpoint)).successful

        # Inactive: model loaded, outputs there, camera not subscribed, model settings locked.
        assert node.change(Transition.TRANSITION_CONFIGURE)
        assert node.state() == State.PRIMARY_STATE_INACTIVE
        wait_until(node.outputs_published, what="outputs after configure")
        assert not node.subscribed()
        refused = probe.set_parameter(NODE, "weights", str(missing))
        assert not refused.successful and "unconfigured" in refused.reason

        # Active: serving. No camera_info in, none out; then each label image gets its own.
        assert node.change(Transition.TRANSITION_ACTIVATE)
        assert node.state() == State.PRIMARY_STATE_ACTIVE
        node.wait_serving()
        labels = node.request(frame)
        assert (labels.height, labels.width) == (HEIGHT, WIDTH)
        assert node.camera_info_out.wait_for(lambda message: True, timeout=1.0) is None
        labels, info = node.request_with_camera_info(frame)
        assert info.header == labels.header
        assert list(info.k) == list(_calibration().k) and info.distortion_model == "plumb_bob"

        # A subscriber that joins late still gets the class table, with the camera's frame_id.
        label_info = probe.recorder(LabelInfo, f"{NODE}/label_info", LATCHED).wait_for(
            lambda m: m.header.frame_id == "front_camera")
        assert label_info is not None, "no latched label info for a late subscriber"
        assert [(c.class_id, c.class_name) for c in label_info.class_map] == list(
            enumerate(CAMVID_CLASS_NAMES))
        assert label_info.threshold == 0.0

        # Inactive again: unsubscribed, not served, outputs and model kept.
        assert node.change(Transition.TRANSITION_DEACTIVATE)
        assert node.state() == State.PRIMARY_STATE_INACTIVE
        wait_until(lambda: not node.subscribed(), what="unsubscribe on deactivate")
        assert node.not_served(frame)
        assert node.outputs_published()
        assert node.change(Transition.TRANSITION_ACTIVATE)
        node.wait_serving()
        node.request(frame)
        assert process.output.count("configured:") == 1  # served again without reloading

        # Cleanup releases the model and the outputs; then shutdown finalizes.
        assert node.change(Transition.TRANSITION_DEACTIVATE)
        assert node.change(Transition.TRANSITION_CLEANUP)
        assert node.state() == State.PRIMARY_STATE_UNCONFIGURED
        wait_until(lambda: not node.outputs_published(), what="outputs gone after cleanup")
        assert not node.subscribed()
        assert node.change(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert node.state() == State.PRIMARY_STATE_FINALIZED
        assert "Traceback" not in process.output


def test_autostart_serves_at_once_and_shutdown_from_active_stops_it(
        weights_params_file, probe, tmp_path):
    with NodeProcess(tmp_path / "node.log", [weights_params_file], executable=EXECUTABLE,
                     arguments=["--autostart", "true"]) as process:
        node = ManagedNode(probe)
        node.wait_serving()
        assert node.state() == State.PRIMARY_STATE_ACTIVE
        node.request(camera_image(HEIGHT, WIDTH, "bgr8"))

        assert node.change(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert node.state() == State.PRIMARY_STATE_FINALIZED
        wait_until(lambda: not node.subscribed() and not node.outputs_published(),
                   what="nothing served after shutdown")
        assert "Traceback" not in process.output
