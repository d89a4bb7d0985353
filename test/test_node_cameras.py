"""Several cameras served by one node (camera_namespaces), over real DDS, node in its own process.

Each camera is answered on its own topics with its own header and at its own size, gets its own
camera_info and /diagnostics status; a camera flooding frames does not starve another.
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import (
    READY_LINE,
    NodeProcess,
    camera_image,
    has_stamp,
    wait_for_answer,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import CameraInfo, Image

NAMESPACE = "/cars"
CAMERAS = {"front": (480, 640), "rear": (720, 1280)}


def test_two_cameras_answered_with_their_own_headers_sizes_and_status(
        weights_params_file, probe, tmp_path):
    settings = write_params_file(tmp_path / "cameras.yaml",
                                 {"camera_namespaces": list(CAMERAS)})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, settings],
                       ["-r", f"__ns:={NAMESPACE}"])
    try:
        node.wait_for_output(READY_LINE)
        assert "cameras run together" in node.output or "cameras run in turn" in node.output
        publishers, info_publishers, labels, infos = {}, {}, {}, {}
        for camera in CAMERAS:
            base = f"{NAMESPACE}/{camera}"
            publishers[camera] = probe.publisher(Image, f"{base}/image_raw")
            info_publishers[camera] = probe.publisher(CameraInfo, f"{base}/camera_info")
            labels[camera] = probe.recorder(Image, f"{base}/fbsnet/labels")
            infos[camera] = probe.recorder(CameraInfo, f"{base}/fbsnet/camera_info")
        diagnostics = probe.recorder(DiagnosticArray, "/diagnostics")
        for camera in CAMERAS:
            wait_until(lambda camera=camera: publishers[camera].get_subscription_count() > 0,
                       what=f"the node's subscription to {camera}")
        # One camera's outputs only under its namespace: no single-camera topics.
        assert probe.node.count_publishers(f"{NAMESPACE}/fbsnet/labels") == 0

        answers = {}
        for camera, (height, width) in CAMERAS.items():
            frame = camera_image(height, width, "rgb8", frame_id=f"{camera}_optical")
            stamp = probe.new_stamp(frame)
            info = CameraInfo(header=frame.header, height=height, width=width)
            info.k[0] = float(width)  # a focal length that tells the cameras apart

            def send(frame=frame, info=info, camera=camera):
                publishers[camera].publish(frame)
                info_publishers[camera].publish(info)

            send()
            answers[camera] = (stamp, wait_for_answer(labels[camera], stamp, send))
        for camera, (height, width) in CAMERAS.items():
            stamp, answer = answers[camera]
            assert (answer.height, answer.width, answer.encoding) == (height, width, "mono8")
            assert answer.header.frame_id == f"{camera}_optical"
            info = infos[camera].wait_for(has_stamp(stamp))
            assert info is not None, f"no camera_info for {camera}'s labels"
            assert info.header == answer.header and info.k[0] == float(width)

        # One status per camera, each counting its own frames.
        def processed(status) -> int:
            return int({entry.key: entry.value for entry in status.values}["frames processed"])

        def per_camera(array):
            return all(any(status.name.endswith(f"{NAMESPACE}/{camera}") and processed(status)
                           for status in array.status) for camera in CAMERAS)

        statuses = diagnostics.wait_for(per_camera)
        assert statuses is not None, "no /diagnostics status per camera counting its frames"
        assert len(statuses.status) == len(CAMERAS)
    finally:
        node.stop()


def test_a_flooding_camera_does_not_starve_another(weights_params_file, probe, tmp_path):
    namespace = "/flood"
    settings = write_params_file(tmp_path / "cameras.yaml",
                                 {"camera_namespaces": ["busy", "quiet"], "max_rate_hz": 0.0})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, settings],
                       ["-r", f"__ns:={namespace}"])
    try:
        node.wait_for_output(READY_LINE)
        busy = probe.publisher(Image, f"{namespace}/busy/image_raw")
        quiet = probe.publisher(Image, f"{namespace}/quiet/image_raw")
        quiet_labels = probe.recorder(Image, f"{namespace}/quiet/fbsnet/labels")
        busy_labels = probe.recorder(Image, f"{namespace}/busy/fbsnet/labels")
        for publisher in (busy, quiet):
            wait_until(lambda publisher=publisher: publisher.get_subscription_count() > 0,
                       what="the node's subscriptions")
        # Prove both directions matched before counting.
        warm_up = camera_image(240, 320, "rgb8")
        stamp = probe.new_stamp(warm_up)
        wait_for_answer(quiet_labels, stamp, lambda: quiet.publish(warm_up))
        # The busy camera floods at 60 Hz (twice a fast camera, more than the node serves) while
        # the quiet one sends a frame every 0.25 s.
        flood = camera_image(480, 640, "rgb8", seed=1)
        quiet_stamps = []
        deadline = time.monotonic() + 4.0
        next_quiet = time.monotonic()
        while time.monotonic() < deadline:
            probe.new_stamp(flood)
            busy.publish(flood)
            if time.monotonic() >= next_quiet:
                frame = camera_image(240, 320, "rgb8", seed=len(quiet_stamps) + 2)
                quiet_stamps.append(probe.new_stamp(frame))
                quiet.publish(frame)
                next_quiet += 0.25
            time.sleep(1 / 60)
        wait_until(lambda: all(quiet_labels.with_stamp(stamp) for stamp in quiet_stamps[-3:]),
                   timeout=30, what="the quiet camera's last frames to be answered")
        answered = sum(bool(quiet_labels.with_stamp(stamp)) for stamp in quiet_stamps)
        # Each camera keeps its own latest frame, so a quiet frame is lost only when the next
        # quiet frame replaces it (a run taking over 0.25 s on a busy machine). With one slot
        # shared by both cameras the flood would replace nearly every quiet frame.
        assert answered >= len(quiet_stamps) / 2, (answered, len(quiet_stamps))
        assert len(busy_labels) > 0
    finally:
        node.stop()


def test_bad_camera_namespaces_stop_the_node_with_one_line(weights_params_file, tmp_path):
    settings = write_params_file(tmp_path / "bad.yaml",
                                 {"camera_namespaces": ["front", "front"]})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, settings])
    try:
        assert node.wait() != 0
        lines = [line for line in node.output.splitlines()
                 if "parameter 'camera_namespaces'" in line]
        assert len(lines) == 1, node.output
        assert "Traceback" not in node.output
    finally:
        node.stop()
