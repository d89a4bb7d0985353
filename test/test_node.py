"""The segmentation node end to end: its console script in a process, talking over real DDS.

One node process (random CamVid weights, the shipped QoS: its input follows the probe's
reliable publisher) serves the topic and parameter tests; start-up failures, compressed input
and signals each get a short process of their own, in their own namespace so their topics
never mix with the shared node's. Camera-sized frames, QoS and transport losses are in
test_node_transport.py.
"""

from __future__ import annotations

import array
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import ReliabilityPolicy
from ros_helpers import (
    ANSWER_TIMEOUT_S,
    LATCHED,
    READY_LINE,
    NodeProcess,
    RosProbe,
    camera_image,
    has_stamp,
    remapped,
    stamp_key,
    subscription_reliabilities,
    wait_for_answer,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import LabelInfo

from fbsnet_ros.data.classes import CAMVID_CLASS_NAMES
from fbsnet_ros.ros.image_conversion import image_msg_to_rgb, rgb_to_compressed_data
from fbsnet_ros.ros.names import CAMERA_TOPIC, DIAGNOSTICS_STATUS_NAME
from fbsnet_ros.ros.node_base import CameraInfoPairing, diagnostic_status
from fbsnet_ros.ros.node_core import (
    FAILED_STREAK_FOR_ERROR,
    STALE_INPUT_S,
    STATISTICS_WINDOW_S,
    FrameStatistics,
    ReceivedFrame,
    SegmentationCore,
)

NUM_CLASSES = 11  # CamVid, as in the random checkpoint
# Low enough that a test frame of modest size can exceed it.
SHARED_NODE_MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def segmentation_node(weights_params_file, tmp_path_factory):
    directory = tmp_path_factory.mktemp("shared_node")
    settings = write_params_file(directory / "shared.yaml",
                                 {"max_pixels": SHARED_NODE_MAX_PIXELS})
    with NodeProcess(directory / "node.log", [weights_params_file, settings]) as node:
        node.wait_for_output(READY_LINE)
        yield node


class Camera:
    """The probe's side of the shared node: a camera publisher and the node's four outputs."""

    def __init__(self, probe: RosProbe, namespace: str = "", input_topic=CAMERA_TOPIC,
                 message_type=Image) -> None:
        self.probe = probe
        self.publisher = probe.publisher(message_type, input_topic)
        self.labels = probe.recorder(Image, f"{namespace}/fbsnet/labels")
        self.color_mask = probe.recorder(Image, f"{namespace}/fbsnet/color_mask")
        self.overlay = probe.recorder(Image, f"{namespace}/fbsnet/overlay")
        self.diagnostics = probe.recorder(DiagnosticArray, "/diagnostics")
        wait_until(lambda: self.publisher.get_subscription_count() > 0, what="node subscription")
        node = probe.node
        # input_reliability auto: the node re-subscribes reliable once it sees this publisher.
        wait_until(lambda: subscription_reliabilities(node, self.publisher.topic_name) == [
            ReliabilityPolicy.RELIABLE], what="the node's input to follow a reliable publisher")
        for recorder in (self.labels, self.color_mask, self.overlay):
            topic = recorder.subscription.topic_name
            wait_until(lambda topic=topic: node.count_publishers(topic) > 0, what=topic)

    def publish(self, message) -> tuple[int, int]:
        stamp = self.probe.new_stamp(message)
        self.publisher.publish(message)
        return stamp

    def request(self, message) -> Image:
        """Publish a frame and return its labels; republished while discovery may lose it."""
        stamp = self.publish(message)
        return wait_for_answer(self.labels, stamp, lambda: self.publisher.publish(message))

    def diagnostics_where(self, condition, timeout: float = ANSWER_TIMEOUT_S) -> dict:
        """Values of the first status published from now on that satisfies condition(values)."""
        def matches(array):
            return any(status.name == DIAGNOSTICS_STATUS_NAME and condition(_values(status))
                       for status in array.status)
        array = self.diagnostics.wait_for(matches, timeout, skip=len(self.diagnostics))
        assert array is not None, "no diagnostics matching the condition"
        status = next(status for status in array.status
                      if status.name == DIAGNOSTICS_STATUS_NAME)
        return {**_values(status), "level": status.level, "hardware_id": status.hardware_id}


@pytest.fixture(scope="module")
def camera(segmentation_node, probe):
    return Camera(probe)


def _values(status) -> dict:
    return {value.key: value.value for value in status.values}


def _pixels(image: Image) -> np.ndarray:
    channels = image.step // image.width
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, channels)


@pytest.mark.parametrize(("height", "width", "encoding", "row_padding", "overlay_encoding"), [
    (360, 480, "rgb8", 0, "rgb8"),
    (240, 320, "bgr8", 0, "bgr8"),
    (123, 457, "mono8", 3, "rgb8"),
])
def test_every_frame_is_answered_at_its_size_with_its_header(
        camera, height, width, encoding, row_padding, overlay_encoding):
    image = camera_image(height, width, encoding, frame_id=f"camera_{encoding}",
                         row_padding=row_padding)
    labels = camera.request(image)
    stamp = stamp_key(labels.header)

    expected_header = (image.header.stamp, f"camera_{encoding}")
    assert (labels.header.stamp, labels.header.frame_id) == expected_header
    assert (labels.height, labels.width, labels.encoding, labels.step) == (
        height, width, "mono8", width)
    assert np.frombuffer(labels.data, np.uint8).max() < NUM_CLASSES

    color_mask = camera.color_mask.wait_for(has_stamp(stamp))
    overlay = camera.overlay.wait_for(has_stamp(stamp))
    assert color_mask is not None and overlay is not None
    assert (color_mask.height, color_mask.width, color_mask.encoding) == (height, width, "rgb8")
    assert (overlay.height, overlay.width, overlay.encoding) == (height, width, overlay_encoding)
    assert overlay.header.frame_id == color_mask.header.frame_id == f"camera_{encoding}"


def test_malformed_frames_are_skipped_and_the_next_frame_served(camera):
    short_data = camera_image(48, 64, "rgb8")
    short_data.data = short_data.data[:-1]
    unknown_encoding = camera_image(48, 64, "rgb8")
    unknown_encoding.encoding = "rgb_mystery"
    too_many_pixels = camera_image(1000, SHARED_NODE_MAX_PIXELS // 1000 + 1, "mono8")
    rejected_before = int(camera.diagnostics_where(lambda values: True)["frames rejected"])

    bad_stamps = []
    for expected_rejected, malformed in enumerate(
            (short_data, unknown_encoding, too_many_pixels), 1):
        bad_stamps.append(camera.publish(malformed))
        # Wait until the node has refused it, so the good frame cannot replace it unseen.
        camera.diagnostics_where(
            lambda values, n=expected_rejected: int(values["frames rejected"])
            >= rejected_before + n)

    assert camera.request(camera_image(48, 64, "rgb8")).width == 64
    for stamp in bad_stamps:
        assert camera.labels.with_stamp(stamp) == []


def test_a_burst_is_served_latest_first_and_every_frame_accounted_for(camera):
    def frame_counts(values):
        return {key: int(values[f"frames {key}"])
                for key in ("received", "processed", "dropped", "rejected", "failed")}

    def all_settled(values):
        counts = frame_counts(values)
        return counts["received"] == sum(counts[key] for key in counts if key != "received")

    before = frame_counts(camera.diagnostics_where(all_settled))
    burst = [camera.publish(camera_image(480, 640, "rgb8", seed=seed)) for seed in range(8)]

    assert camera.labels.wait_for(has_stamp(burst[-1])) is not None, "newest frame unanswered"
    after = frame_counts(camera.diagnostics_where(
        lambda values: all_settled(values) and frame_counts(values)["processed"] > before[
            "processed"]))
    answered = sum(len(camera.labels.with_stamp(stamp)) for stamp in burst)
    delta = {key: after[key] - before[key] for key in after}
    assert answered == delta["processed"]
    # Frames the worker had no time for were replaced in the mailbox, never queued.
    assert delta["received"] == delta["processed"] + delta["dropped"]


def test_diagnostics_report_counts_latency_and_errors(camera):
    camera.request(camera_image(48, 64, "bgr8"))
    depth_image = camera_image(48, 64, "mono8")
    depth_image.encoding = "16UC1"  # a depth image on a camera topic
    camera.publish(depth_image)

    values = camera.diagnostics_where(
        lambda values: int(values["frames rejected"]) >= 1 and int(values["frames processed"]) >= 1)

    assert values["hardware_id"] == "cpu"
    assert int(values["frames received"]) >= int(values["frames processed"]) + int(
        values["frames rejected"])
    assert int(values["frames dropped"]) >= 0
    assert 0.0 < float(values["latency p50 ms"]) <= float(values["latency p90 ms"]) <= float(
        values["latency p99 ms"])
    assert float(values["fps"]) >= 0.0
    assert values["last error"]


def test_overlay_alpha_changes_at_runtime_within_its_range(camera, probe):
    accepted = probe.set_parameter("/fbsnet", "overlay_alpha", 0.3)
    refused = probe.set_parameter("/fbsnet", "overlay_alpha", 1.5)
    assert accepted.successful
    assert not refused.successful and "overlay_alpha" in refused.reason

    image = camera_image(60, 80, "rgb8", seed=3)
    labels = camera.request(image)
    stamp = stamp_key(labels.header)
    color_mask = camera.color_mask.wait_for(has_stamp(stamp))
    overlay = camera.overlay.wait_for(has_stamp(stamp))
    # Still blended at 0.3: the refused 1.5 changed nothing.
    expected = cv2.addWeighted(image_msg_to_rgb(image), 0.7, _pixels(color_mask), 0.3, 0.0)
    np.testing.assert_array_equal(_pixels(overlay), expected)


def test_read_only_parameters_are_refused_at_runtime(probe, camera):
    result = probe.set_parameter("/fbsnet", "weights", "/tmp/other.pt")
    assert not result.successful and "read-only" in result.reason


def test_publish_overlay_false_stops_the_overlay_only(camera, probe):
    assert probe.set_parameter("/fbsnet", "publish_overlay", False).successful
    try:
        labels = camera.request(camera_image(48, 64, "rgb8"))
        stamp = stamp_key(labels.header)
        # The worker publishes the mask before the overlay, so by now an overlay would be here.
        assert camera.color_mask.wait_for(has_stamp(stamp)) is not None
        assert camera.overlay.with_stamp(stamp) == []
    finally:
        probe.set_parameter("/fbsnet", "publish_overlay", True)


def test_unknown_parameter_stops_the_node_naming_it(weights_params_file, tmp_path):
    typo = write_params_file(tmp_path / "typo.yaml", {"overlay_alpah": 0.5})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, typo])
    try:
        assert node.wait() != 0
        assert "overlay_alpah" in node.output
        assert "Traceback" not in node.output
    finally:
        node.stop()


def test_missing_weights_exit_with_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "no_such_weights.pt"
    weights = write_params_file(tmp_path / "weights.yaml", {"weights": str(missing)})
    node = NodeProcess(tmp_path / "node.log", [weights])
    try:
        assert node.wait() != 0
        naming_lines = [line for line in node.output.splitlines() if str(missing) in line]
        assert len(naming_lines) == 1, node.output
        assert "Traceback" not in node.output
    finally:
        node.stop()


def _bad_start_settings(tmp_path, random_checkpoint) -> dict:
    """Each case: parameters that must stop the node, and text its one error line must hold."""
    import torch

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(random_checkpoint.read_bytes()[:2000])
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("these are not weights")
    payload = torch.load(random_checkpoint, weights_only=True)
    payload["metadata"]["class_names"] = payload["metadata"]["class_names"][:4]
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    cases = {
        "truncated": ({"weights": str(truncated)}, str(truncated)),
        "not_a_checkpoint": ({"weights": str(not_a_checkpoint)}, str(not_a_checkpoint)),
        "class_count": ({"weights": str(mismatched)}, "4 class names"),
        "input_size": ({"weights": str(random_checkpoint), "input_size": [100, 100]},
                       "input_size"),
        "upsample": ({"weights": str(random_checkpoint), "upsample": "cubic"}, "upsample"),
    }
    if not torch.cuda.is_available():
        cases["cuda_without_gpu"] = ({"weights": str(random_checkpoint), "device": "cuda"},
                                     "CUDA is not available")
    return cases


@pytest.mark.parametrize("case", ["truncated", "not_a_checkpoint", "class_count", "input_size",
                                  "upsample", "cuda_without_gpu"])
def test_bad_start_up_settings_exit_with_one_clear_line(case, random_checkpoint, tmp_path):
    cases = _bad_start_settings(tmp_path, random_checkpoint)
    if case not in cases:
        pytest.skip("this machine has CUDA, so device 'cuda' is valid here")
    parameters, expected_text = cases[case]
    node = NodeProcess(tmp_path / "node.log", [write_params_file(tmp_path / "bad.yaml",
                                                                 parameters)])
    try:
        assert node.wait() != 0
        lines = [line for line in node.output.splitlines() if expected_text in line]
        assert len(lines) == 1, node.output
        assert "Traceback" not in node.output
    finally:
        node.stop()


def test_compressed_input_is_decoded_and_answered_at_its_size(
        weights_params_file, probe, tmp_path):
    # Remapped, to check the compressed topic follows the camera topic's remapping.
    namespace, camera_topic = "/compressed_test", "/compressed_test/image"
    settings = write_params_file(tmp_path / "compressed.yaml", {"input_transport": "compressed"})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, settings],
                       remapped(namespace, camera_topic))
    try:
        node.wait_for_output(READY_LINE)
        camera = Camera(probe, namespace, f"{camera_topic}/compressed", CompressedImage)
        rgb = image_msg_to_rgb(camera_image(150, 200, "rgb8", seed=5))
        jpeg = CompressedImage(format="rgb8; jpeg compressed bgr8",
                               data=rgb_to_compressed_data(rgb, "jpeg"))
        jpeg.header.frame_id = "compressed_camera"

        labels = camera.request(jpeg)

        assert (labels.height, labels.width, labels.encoding) == (150, 200, "mono8")
        assert labels.header.frame_id == "compressed_camera"
        stamp = stamp_key(labels.header)
        overlay = camera.overlay.wait_for(has_stamp(stamp))
        assert (overlay.height, overlay.width, overlay.encoding) == (150, 200, "rgb8")
    finally:
        node.stop()


def test_label_info_is_latched_for_a_late_subscriber_with_the_cameras_frame(camera, probe):
    camera.request(camera_image(480, 640, "rgb8", frame_id="label_info_camera"))

    late = probe.recorder(LabelInfo, "/fbsnet/label_info", LATCHED)
    label_info = late.wait_for(lambda message: message.header.frame_id == "label_info_camera")

    assert label_info is not None, "a late subscriber got no label info"
    assert [(entry.class_id, entry.class_name) for entry in label_info.class_map] == list(
        enumerate(CAMVID_CLASS_NAMES))
    assert label_info.threshold == 0.0  # the shipped confidence_threshold: off


def test_without_vision_msgs_the_node_serves_warns_once_and_has_no_label_info(
        weights_params_file, probe, tmp_path):
    # A vision_msgs that cannot be imported, first on the path: a machine without it.
    hidden = tmp_path / "hidden" / "vision_msgs"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    python_path = os.pathsep.join(filter(None, [str(hidden.parent),
                                                os.environ.get("PYTHONPATH")]))
    namespace, camera_topic = "/no_vision_msgs", "/no_vision_msgs/front/image_raw"
    node = NodeProcess(tmp_path / "node.log", [weights_params_file],
                       remapped(namespace, camera_topic),
                       environment={"PYTHONPATH": python_path})
    try:
        node.wait_for_output(READY_LINE)
        camera = Camera(probe, namespace, camera_topic)
        labels = camera.request(camera_image(480, 640, "rgb8"))

        assert (labels.height, labels.width) == (480, 640)
        assert node.output.count("no ~/label_info: vision_msgs is not installed") == 1
        assert probe.node.count_publishers(f"{namespace}/fbsnet/label_info") == 0
        # The camera_info input moved with the remapped camera: its sibling topic.
        wait_until(lambda: probe.node.count_subscribers(f"{namespace}/front/camera_info") == 1,
                   what="a subscription to the camera's sibling camera_info")
        assert "Traceback" not in node.output
    finally:
        node.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_node_promptly_mid_frame(
        weights_params_file, probe, tmp_path, stop_signal):
    namespace = f"/{stop_signal.name.lower()}_test"
    camera_topic = f"{namespace}/image"
    node = NodeProcess(tmp_path / "node.log", [weights_params_file],
                       remapped(namespace, camera_topic))
    try:
        node.wait_for_output(READY_LINE)
        camera = Camera(probe, namespace, camera_topic)
        # Large frames keep the worker busy, so the signal lands while one is in flight.
        large_frame = camera_image(1080, 1920, "rgb8")
        camera.request(large_frame)
        camera.publish(large_frame)
        time.sleep(0.05)

        signalled_at = time.monotonic()
        node.process.send_signal(stop_signal)
        node.wait(timeout=10)
        assert time.monotonic() - signalled_at < 10
        assert node.process.returncode == 0, node.output
        assert "Traceback" not in node.output
    finally:
        node.stop()


# A node whose spin meets the stop signal inside native code calling back into Python: rclpy's
# take_message converting a 1080p frame turns the KeyboardInterrupt into pybind11's error.
SIGNAL_IN_NATIVE_CODE_SCRIPT = """
import signal, sys
import rclpy.node
from fbsnet_ros.ros import stop_signals
from fbsnet_ros.ros.node_base import run_node

def make_node():
    node = rclpy.node.Node("signal_in_native_code")

    def take():
        try:
            if sys.argv[1] == "signalled":
                signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        raise RuntimeError("Unable to convert call argument '0' to Python object")

    node.create_timer(0.1, take)
    return node

stop_signals.install()
sys.exit(run_node(make_node, []))
"""


@pytest.mark.parametrize("case", ["signalled", "not signalled"])
def test_a_stop_signal_that_native_code_turned_into_its_own_error_still_stops_cleanly(case):
    completed = subprocess.run([sys.executable, "-c", SIGNAL_IN_NATIVE_CODE_SCRIPT, case],
                               capture_output=True, text=True, timeout=60)
    if case == "signalled":
        assert completed.returncode == 0, completed.stderr
        assert "Traceback" not in completed.stderr
    else:  # the same error without a stop signal is a fault, not swallowed
        assert completed.returncode == 1
        assert "RuntimeError: Unable to convert call argument" in completed.stderr


def test_statistics_levels_follow_input_and_failures():
    statistics = FrameStatistics()

    def status(now):
        return diagnostic_status(statistics.report(now), DIAGNOSTICS_STATUS_NAME, "cpu")

    assert status(0.0).level == DiagnosticStatus.OK  # waiting for a camera is no fault
    statistics.record_received(1.0, replaced_waiting_frame=False)
    statistics.record_processed(ReceivedFrame(Image(), received_at=1.0), now=1.04)
    healthy = status(1.5)
    assert healthy.level == DiagnosticStatus.OK
    assert _values(healthy)["latency p50 ms"] == "40.0"
    assert status(1.0 + STALE_INPUT_S + 0.5).level == DiagnosticStatus.WARN

    for second in range(10, 10 + FAILED_STREAK_FOR_ERROR):
        statistics.record_received(second, replaced_waiting_frame=False)
        statistics.record_rejected("encoding 'x' not supported", second)
    assert status(10.0 + FAILED_STREAK_FOR_ERROR).level == DiagnosticStatus.ERROR
    recovered_at = 10.0 + FAILED_STREAK_FOR_ERROR
    statistics.record_received(recovered_at, replaced_waiting_frame=False)
    statistics.record_processed(ReceivedFrame(Image(), recovered_at), now=recovered_at + 0.1)
    recovering = status(recovered_at + 0.2)
    assert recovering.level == DiagnosticStatus.WARN  # served again, but errors are recent
    assert _values(recovering)["last error"] == "encoding 'x' not supported"
    later = recovered_at + STATISTICS_WINDOW_S
    statistics.record_received(later, replaced_waiting_frame=False)
    statistics.record_processed(ReceivedFrame(Image(), later), now=later + 0.1)
    assert status(later + 0.2).level == DiagnosticStatus.OK  # the errors have aged out


def test_the_next_frame_is_segmented_while_a_result_is_published(random_checkpoint):
    """The core's two threads: publishing a result overlaps the next inference, results come
    out in order, and a publisher that fails skips that frame only."""
    release_first, published, failures = threading.Event(), [], []

    def publish(camera: int, result) -> None:
        frame_id = result.message.header.frame_id
        if frame_id == "first":
            assert release_first.wait(ANSWER_TIMEOUT_S)  # holds the publishing thread
        if frame_id == "broken":
            raise RuntimeError("publisher went away")
        assert result.labels.shape == (120, 160)
        published.append(frame_id)

    core = SegmentationCore(input_transport="raw", max_pixels=10**6, publish=publish,
                            on_rejected=lambda camera, reason: None,
                            on_failed=lambda reason, details: failures.append(reason),
                            shutting_down=lambda: False)
    core.load({"weights": str(random_checkpoint), "device": "cpu", "input_size": [],
               "upsample": "bilinear", "backend": "torch", "inference_threads": 0})
    segmented = []
    segment_batch = core.segmenter.segment_batch

    def counting_segment_batch(images, **options):
        results = segment_batch(images, **options)
        segmented.append(len(images))
        return results

    core.segmenter.segment_batch = counting_segment_batch
    core.start()
    try:
        core.intake(camera_image(120, 160, "rgb8", frame_id="first"))
        wait_until(lambda: len(segmented) == 1, ANSWER_TIMEOUT_S, "the first frame")
        core.intake(camera_image(120, 160, "rgb8", frame_id="second"))
        # Segmented while the first result is still being published.
        wait_until(lambda: len(segmented) == 2, ANSWER_TIMEOUT_S, "the second frame")
        assert published == []
        core.intake(camera_image(120, 160, "rgb8", frame_id="third"))
        time.sleep(0.5)
        # One result waits for the publishing thread: the worker holds the third frame back.
        assert len(segmented) == 2
        release_first.set()
        wait_until(lambda: published == ["first", "second", "third"], ANSWER_TIMEOUT_S,
                   "three results in order")
        core.intake(camera_image(120, 160, "rgb8", frame_id="broken"))
        wait_until(lambda: len(segmented) == 4, ANSWER_TIMEOUT_S, "the broken frame")
        core.intake(camera_image(120, 160, "rgb8", frame_id="after"))
        wait_until(lambda: published[-1] == "after", ANSWER_TIMEOUT_S, "the frame after")
    finally:
        core.release()
    statistics = core.statistics[0]
    assert (statistics.processed, statistics.failed) == (4, 1)
    assert failures == ["RuntimeError('publisher went away')"]
    assert not core.serving


def _raw_image(height: int, width: int, encoding: str, step: int, size: int) -> Image:
    image = Image(height=height, width=width, encoding=encoding, step=step)
    image.header.frame_id = "camera"
    image.data = array.array("B", bytes(size))
    return image


def test_unusable_frames_of_every_kind_are_rejected_and_odd_sizes_served(camera):
    unusable = [
        _raw_image(48, 64, "16UC1", 128, 48 * 128),  # depth, not a camera image
        _raw_image(48, 64, "32FC1", 256, 48 * 256),
        _raw_image(0, 64, "rgb8", 192, 0),  # zero height
        _raw_image(48, 0, "rgb8", 0, 0),  # zero width
        _raw_image(48, 64, "rgb8", 100, 48 * 100),  # step smaller than 64 x 3
    ]
    rejected_before = int(camera.diagnostics_where(lambda values: True)["frames rejected"])
    stamps = []
    for count, frame in enumerate(unusable, 1):
        stamps.append(camera.publish(frame))
        camera.diagnostics_where(
            lambda values, n=count: int(values["frames rejected"]) >= rejected_before + n)
    for stamp in stamps:
        assert camera.labels.with_stamp(stamp) == []

    for height, width in ((1, 1), (7, 3), (4001, 3)):
        labels = camera.request(camera_image(height, width, "rgb8"))
        assert (labels.height, labels.width, labels.encoding) == (height, width, "mono8")


def test_statistics_warn_on_frames_lost_and_on_publishers_that_send_nothing():
    statistics = FrameStatistics()

    def status(now):
        return diagnostic_status(statistics.report(now), DIAGNOSTICS_STATUS_NAME, "cpu")

    statistics.record_publishers(1, now=10.0)
    assert status(10.0 + STALE_INPUT_S / 2).level == DiagnosticStatus.OK  # matching takes a moment
    silent = status(10.0 + STALE_INPUT_S + 0.5)
    assert silent.level == DiagnosticStatus.WARN and "no frame for" in silent.message
    assert _values(silent)["input publishers"] == "1"

    statistics.record_received(20.0, replaced_waiting_frame=False)
    statistics.record_processed(ReceivedFrame(Image(), received_at=20.0), now=20.1)
    assert status(20.2).level == DiagnosticStatus.OK
    statistics.record_lost(3, now=20.5)
    lost = status(20.6)
    assert lost.level == DiagnosticStatus.WARN and "fastdds_large_frames.xml" in lost.message
    assert _values(lost)["frames lost in transport"] == "3"
    statistics.record_received(20.0 + STATISTICS_WINDOW_S, replaced_waiting_frame=False)
    assert status(20.6 + STATISTICS_WINDOW_S).level == DiagnosticStatus.OK  # the loss aged out


def _header(sec: int) -> Header:
    header = Header(frame_id="camera")
    header.stamp.sec = sec
    return header


def test_camera_info_pairs_with_its_label_image_in_either_order():
    pairing = CameraInfoPairing()
    assert pairing.for_labels(_header(1)) is None  # no camera_info in, none out

    first = CameraInfo(header=_header(1), width=1)
    assert pairing.for_camera_info(first) == []  # the labels of 1 went out with none
    assert pairing.for_labels(_header(1)) is first  # same stamp

    # Labels before their camera_info: they wait for it, and get exactly it.
    assert pairing.for_labels(_header(2)) is None
    assert pairing.for_labels(_header(3)) is None
    third = CameraInfo(header=_header(3), width=3)
    assert pairing.for_camera_info(third) == [_header(2), _header(3)]
    assert pairing.for_labels(_header(2)) is third  # 2's own never came: the next one
    assert pairing.for_camera_info(CameraInfo(header=_header(4))) == []  # nothing waits
