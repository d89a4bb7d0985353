"""The node as deployed: shipped config and weights, camera-sized frames from another process.

Cameras (usb_cam, v4l2_camera) publish reliable by default; others publish best effort, and
Fast DDS loses best-effort messages above ~512 KB unless the publishing process loads
config/fastdds_large_frames.xml. Frames are paced one at a time by bench/camera_qos.py, a
camera in its own process, as the README's table was measured. The node runs with
config/segmentation.yaml and nothing else; only its namespace and camera topic are remapped,
as the launch file's arguments do, so its topics never meet another test's node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import (
    LARGE_FRAMES_PROFILE,
    READY_LINE,
    REPO_ROOT,
    NodeProcess,
    remapped,
    subscription_reliabilities,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import Image

from fbsnet_ros.ros.compat import FASTDDS_PROFILES_FILE_VARIABLES, fastdds_profiles_env
from fbsnet_ros.ros.names import DIAGNOSTICS_STATUS_NAME
from fbsnet_ros.ros.node_base import PUBLISHER_CHECK_PERIOD_S
from fbsnet_ros.ros.node_core import STALE_INPUT_S
from fbsnet_ros.ros.stop_signals import STOP_GRACE_S

CAMERA_SCRIPT = REPO_ROOT / "bench" / "camera_qos.py"
NAMESPACE = "/deployed"
DEPLOYED_CAMERA_TOPIC = f"{NAMESPACE}/image_raw"
# A 1080p frame through eager torch on two shared cores, with colour mask and overlay.
FRAME_TIMEOUT_S = 20.0
# A lost frame shows on /diagnostics within the publisher-but-no-frames delay, plus slack.
LOSS_REPORT_TIMEOUT_S = STALE_INPUT_S + 15.0
# A stop signal must end the node this fast, whatever it was doing.
STOP_TIMEOUT_S = STOP_GRACE_S + 3.0
BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


@pytest.fixture(scope="module")
def deployed_node(tmp_path_factory):
    with NodeProcess(tmp_path_factory.mktemp("deployed") / "node.log", [],
                     remapped(NAMESPACE, DEPLOYED_CAMERA_TOPIC)) as node:
        node.wait_for_output(READY_LINE)
        yield node


def run_camera(tmp_path, *, size: str, encoding: str = "rgb8", reliability: str = "reliable",
               frames: int = 3, outputs=("labels", "color_mask", "overlay"),
               answer_reliability: str = "reliable", timeout: float = FRAME_TIMEOUT_S,
               large_frames_profile: bool = False, namespace: str = NAMESPACE,
               camera_topic: str = DEPLOYED_CAMERA_TOPIC, warmup: int = 0) -> dict:
    """bench/camera_qos.py in its own process; its JSON report."""
    report_path = tmp_path / f"camera_{size}_{encoding}_{reliability}.json"
    environment = {name: value for name, value in os.environ.items()
                   if name not in FASTDDS_PROFILES_FILE_VARIABLES}
    if large_frames_profile:
        environment.update(fastdds_profiles_env(LARGE_FRAMES_PROFILE))
    completed = subprocess.run(
        [sys.executable, str(CAMERA_SCRIPT), "--size", size, "--encoding", encoding,
         "--reliability", reliability, "--frames", str(frames), "--outputs", *outputs,
         "--answer-reliability", answer_reliability, "--timeout", str(timeout),
         "--topic", camera_topic, "--namespace", namespace, "--frame-id", f"camera_{encoding}",
         "--warmup", str(warmup), "--json", str(report_path)],
        capture_output=True, text=True, env=environment,
        # camera_qos sends a warm-up frame at most 3 times (its WARMUP_ATTEMPTS).
        timeout=120 + (frames + 3 * warmup) * (timeout + 5))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(report_path.read_text())


@pytest.mark.parametrize(("size", "encoding"), [
    ("480x640", "rgb8"), ("720x1280", "rgb8"), ("1080x1920", "rgb8"),
    ("720x1280", "bgr8"), ("720x1280", "yuv422"),
])
def test_reliable_camera_frames_are_all_answered_at_their_size(
        deployed_node, tmp_path, size, encoding):
    report = run_camera(tmp_path, size=size, encoding=encoding)

    assert report["settled"], "the node's input did not follow the reliable camera"
    # camera_qos matches answers to frames by stamp and checks size and frame_id.
    assert report["wrong"] == []
    assert report["answered"] == report["sent"] == 3, report
    assert report["answered_per_output"] == {"labels": 3, "color_mask": 3, "overlay": 3}


def _transport_warnings(probe_recorder, start: int) -> list[dict]:
    warnings = []
    for array in probe_recorder.messages[start:]:
        for status in array.status:
            values = {value.key: value.value for value in status.values}
            if (status.name == DIAGNOSTICS_STATUS_NAME
                    and status.level == DiagnosticStatus.WARN
                    and (int(values["frames lost in transport"]) > 0
                         or "no frame for" in status.message)):
                warnings.append({**values, "message": status.message})
    return warnings


def test_best_effort_1080p_without_the_profile_is_answered_or_reported(
        deployed_node, probe, tmp_path):
    diagnostics = probe.recorder(DiagnosticArray, "/diagnostics")
    wait_until(lambda: len(diagnostics) > 0, what="diagnostics")
    start = len(diagnostics)

    report = run_camera(tmp_path, size="1080x1920", reliability="best_effort", frames=3,
                        outputs=("labels",), timeout=4.0)

    assert report["settled"], "the node's input did not follow the best-effort camera"
    if report["answered"] < report["sent"]:
        wait_until(lambda: _transport_warnings(diagnostics, start), LOSS_REPORT_TIMEOUT_S,
                   "a WARN on /diagnostics for the lost frames")
        warning = _transport_warnings(diagnostics, start)[0]
        assert "fastdds_large_frames.xml" in warning["message"]
        assert warning["input reliability"] == "best_effort"


def test_best_effort_1080p_camera_with_the_profile_is_answered(deployed_node, tmp_path):
    report = run_camera(tmp_path, size="1080x1920", reliability="best_effort", frames=10,
                        outputs=("labels",), large_frames_profile=True)

    assert report["wrong"] == []
    assert report["answered"] >= 0.9 * report["sent"], report


def test_large_outputs_reach_a_best_effort_subscriber_in_another_process(tmp_path):
    namespace, camera_topic = "/outputs_test", "/outputs_test/image_raw"
    # The node's process publishes the large messages, so it is the one that loads the profile.
    node = NodeProcess(tmp_path / "node.log", [], remapped(namespace, camera_topic),
                       fastdds_profiles_env(LARGE_FRAMES_PROFILE))
    try:
        node.wait_for_output(READY_LINE)
        # What is tested is the outputs' transport, not the node's start: a warm-up frame
        # answered on every output first (both sides of each pair matched, the frame size
        # compiled), so the three counted frames measure the steady state.
        report = run_camera(tmp_path, size="720x1280", answer_reliability="best_effort",
                            namespace=namespace, camera_topic=camera_topic, warmup=1)
    finally:
        node.stop()

    assert report["warmed_up"], report
    assert report["wrong"] == []
    assert report["answered_per_output"] == {"labels": 3, "color_mask": 3, "overlay": 3}, report


def test_reliability_override_wins_and_incompatible_qos_is_counted(
        random_weights_built, probe, tmp_path):
    """qos_overrides fix the input at best effort against a reliable publisher (no switch);
    input_reliability reliable against a best-effort publisher is reported, not silent."""
    overridden_topic, strict_topic = "/override_test/image_raw", "/strict_test/image_raw"
    weights = {"weights": str(random_weights_built), "device": "cpu"}
    overridden = NodeProcess(tmp_path / "overridden.log", [write_params_file(
        tmp_path / "overridden.yaml", {**weights, "qos_overrides": {overridden_topic: {
            "subscription": {"reliability": "best_effort"}}}})],
        remapped("/override_test", overridden_topic))
    strict = NodeProcess(tmp_path / "strict.log", [write_params_file(
        tmp_path / "strict.yaml", {**weights, "input_reliability": "reliable"})],
        remapped("/strict_test", strict_topic))
    try:
        overridden.wait_for_output(READY_LINE)
        strict.wait_for_output(READY_LINE)
        diagnostics = probe.recorder(DiagnosticArray, "/diagnostics")
        reliable_camera = probe.publisher(Image, overridden_topic)
        probe.node.create_publisher(Image, strict_topic, BEST_EFFORT)

        def strict_status() -> dict:
            for array in reversed(diagnostics.messages):
                for status in array.status:
                    values = {value.key: value.value for value in status.values}
                    if values.get("input reliability") == "reliable":
                        return {**values, "level": status.level}
            return {}
        wait_until(lambda: strict_status().get("incompatible QoS input", "0") != "0",
                   what="the incompatible publisher counted on /diagnostics")
        assert "cannot match (RELIABILITY" in strict.output
        # No frame can arrive from it: the status warns once the delay has passed.
        wait_until(lambda: strict_status().get("level") == DiagnosticStatus.WARN,
                   LOSS_REPORT_TIMEOUT_S, "WARN for a publisher that sends nothing")

        wait_until(lambda: reliable_camera.get_subscription_count() > 0, what="overridden node")
        time.sleep(3 * PUBLISHER_CHECK_PERIOD_S)  # time enough for auto to have switched
        assert subscription_reliabilities(probe.node, overridden_topic) == [
            ReliabilityPolicy.BEST_EFFORT]
        assert "now reliable" not in overridden.output
    finally:
        overridden.stop()
        strict.stop()


@pytest.mark.parametrize(("backend", "delay_s"), [
    ("torch", 1.0), ("torch", 2.0), ("torch", 3.5),
    # `auto` exports and compiles a backend for seconds in native code, where no Python
    # exception reaches: the node's watchdog ends it.
    ("auto", 8.0),
])
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_during_start_up_ends_the_node_promptly(
        tmp_path, stop_signal, backend, delay_s):
    # Shipped weights: imports, weights and the engine set-up span these moments.
    ros_arguments = [*remapped("/stop_test", "/stop_test/image"), "-p", f"backend:={backend}"]
    node = NodeProcess(tmp_path / "node.log", [], ros_arguments)
    try:
        time.sleep(delay_s)
        signalled_at = time.monotonic()
        node.process.send_signal(stop_signal)
        returncode = node.wait(timeout=STOP_TIMEOUT_S + 30)
        stopped_after = time.monotonic() - signalled_at
        assert stopped_after < STOP_TIMEOUT_S, (stopped_after, node.output)
        # The signal may land while Python is still importing torch, before main() can
        # handle it: then Python's own default (KeyboardInterrupt, or SIGTERM's death) applies.
        assert returncode in (0, -stop_signal), node.output
        if returncode == 0:
            assert "Traceback" not in node.output, node.output
        assert "RCLError" not in node.output
    finally:
        node.stop()


def test_a_missing_params_file_ends_in_one_line_naming_it(tmp_path):
    missing = tmp_path / "missing.yaml"
    node = NodeProcess(tmp_path / "node.log", [missing])
    try:
        assert node.wait() == 2
        lines = node.output.strip().splitlines()
        assert len(lines) == 1 and str(missing) in lines[0], node.output
    finally:
        node.stop()
