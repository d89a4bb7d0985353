"""`fbsnet-ros demo`: the real node over real DDS, fed by a camera-like source, saving results.

The node runs in its own process exactly as `ros2 launch` would start it (console script,
config/segmentation.yaml); this process plays the camera and a viewer.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fbsnet_ros.data.frame_sources import frame_source
from fbsnet_ros.data.io import DatasetError
from fbsnet_ros.ros.compat import (
    FASTDDS_PROFILES_FILE_VARIABLES,
    fastdds_profiles_env,
    matched_publishers,
)
from fbsnet_ros.ros.image_conversion import image_msg_to_rgb, rgb_to_image_fields
from fbsnet_ros.ros.names import CAMERA_TOPIC, LABELS_TOPIC, OVERLAY_TOPIC
from fbsnet_ros.ros.processes import node_executable, stop_node_process
from fbsnet_ros.ros.stamps import stamp_to_ns

# Loading torch and the weights in the node process takes a while on a small CPU.
NODE_START_TIMEOUT_S = 120.0
FRAME_TIMEOUT_S = 60.0
# A frame without its complete answer by then is published again (same stamp): the node's
# publishers and this process's subscriptions match asynchronously on both sides, and the
# node computes the overlay only once it sees a subscriber, so the first frames can go
# unanswered even after this side has matched.
RESEND_AFTER_S = 5.0
# av_log's AV_LOG_QUIET, read by OpenCV's FFmpeg backend from OPENCV_FFMPEG_LOGLEVEL.
FFMPEG_LOG_QUIET = -8
# How long the node (input_reliability auto) may take to re-subscribe reliable to this camera.
INPUT_FOLLOW_TIMEOUT_S = 5.0
# What the demo shows of the node's outputs.
ANSWER_TOPICS = {"labels": LABELS_TOPIC, "overlay": OVERLAY_TOPIC}


def config_file(name: str) -> Path:
    """config/<name> from the ament share folder, or from this source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("fbsnet_ros")) / "config" / name
        if installed.is_file():
            return installed
    except (ImportError, LookupError, ValueError, OSError):  # no ament index: a source checkout
        pass
    return Path(__file__).resolve().parents[2] / "config" / name


def default_params_file() -> Path:
    return config_file("segmentation.yaml")


class DemoCamera(Node):
    """Publishes frames on the camera topic and collects the node's answers by stamp."""

    def __init__(self) -> None:
        super().__init__("fbsnet_demo_camera")
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.create_publisher(Image, CAMERA_TOPIC, reliable)
        self.answers: dict[str, dict[int, Image]] = {name: {} for name in ANSWER_TOPICS}
        self.arrived = threading.Condition()
        self.answer_subscriptions = {
            name: self.create_subscription(
                Image, topic, lambda msg, name=name: self._on_answer(name, msg), reliable)
            for name, topic in ANSWER_TOPICS.items()}

    def _on_answer(self, topic: str, msg: Image) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        with self.arrived:
            self.answers[topic][stamp] = msg
            self.arrived.notify_all()

    def unmatched(self) -> list[str]:
        """What has not matched yet, on this side: the node's input, then each output."""
        waiting = []
        if self.publisher.get_subscription_count() == 0:
            waiting.append(f"the node's subscription to {CAMERA_TOPIC}")
        for name, subscription in self.answer_subscriptions.items():
            if matched_publishers(self, subscription) == 0:
                waiting.append(f"the node's publisher of {ANSWER_TOPICS[name]}")
        return waiting

    def input_reliable(self) -> bool:
        """The node's input has followed this reliable camera (input_reliability auto)."""
        return any(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                   for info in self.get_subscriptions_info_by_topic(CAMERA_TOPIC))

    def new_frame(self, rgb: np.ndarray) -> tuple[Image, int]:
        msg = Image(**rgb_to_image_fields(rgb, "rgb8"))
        msg.header.frame_id = "camera"
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg, stamp_to_ns(msg.header.stamp)

    def missing_answers(self, stamp: int, timeout: float) -> list[str]:
        """Wait up to timeout for every answer to stamp; the topics still missing."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while missing := [name for name, answers in self.answers.items()
                              if stamp not in answers]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return missing
                self.arrived.wait(remaining)
            return []

    def take_answers(self, stamp: int) -> dict[str, Image]:
        """The answers to stamp; answers to earlier frames (resends) are forgotten."""
        with self.arrived:
            taken = {name: answers[stamp] for name, answers in self.answers.items()}
            for answers in self.answers.values():
                for old_stamp in [key for key in answers if key <= stamp]:
                    del answers[old_stamp]
            return taken


def describe_weights(weights: str | None) -> str:
    from fbsnet_ros.checkpoint import safe_load
    from fbsnet_ros.inference.engine import default_weights_path

    path = Path(weights) if weights else default_weights_path()
    metadata = safe_load(path).get("metadata", {})
    miou = metadata.get("training", {}).get("best_val_miou")
    trained = f", val mIoU {100 * miou:.1f}%" if isinstance(miou, float) and miou >= 0 else ""
    kind = "shipped" if not weights else "given"
    return f"{kind} weights {path} ({metadata.get('dataset', 'unknown')}{trained})"


def run_demo(*, weights: str | None, images: str | None, video: str | None, frames: int,
             output: str, size: tuple[int, int], params_file: str | None,
             backend: str = "auto") -> int:
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    # FFmpeg's own complaints about a file that is no video would precede the one-line error.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", str(FFMPEG_LOG_QUIET))
    # The first frame is read before the node starts, so an unreadable source fails at once.
    source = frame_source(images, video, size)
    first_frame = next(source, None)
    if first_frame is None:
        raise DatasetError(f"{video or images}: no frame could be read from it")
    output_dir = Path(output)
    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"demo: {describe_weights(weights)}", flush=True)

    # The demo's 360x480 frames (518 KB) are over Fast DDS's default shared-memory segment:
    # without the large-frames profile in both processes they go as UDP fragments, and a lost
    # fragment held a frame back 2-3 s until the reliable protocol resent it. A profile the
    # user set is kept.
    if not any(os.environ.get(name) for name in FASTDDS_PROFILES_FILE_VARIABLES):
        os.environ.update(fastdds_profiles_env(config_file("fastdds_large_frames.xml")))
    command = [node_executable(), "--ros-args", "--params-file",
               str(params_file or default_params_file())]
    if weights:
        command += ["-p", f"weights:={Path(weights).resolve()}"]
    # The fastest backend unless told otherwise; the node logs what auto chose.
    command += ["-p", f"backend:={backend}"]
    node_process = subprocess.Popen(command)
    rclpy.init()
    camera = DemoCamera()
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(camera)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        return _play(camera, node_process, itertools.chain([first_frame], source), frames,
                     output_dir)
    finally:
        stop_node_process(node_process)
        executor.shutdown()
        # Exiting while the spin thread is still inside rclpy aborts the process
        # ("terminate called without an active exception"): let it return first.
        spinner.join(timeout=10)
        camera.destroy_node()
        rclpy.try_shutdown()


def _play(camera: DemoCamera, node_process: subprocess.Popen, source, frames: int,
          output_dir: Path) -> int:
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while waiting := camera.unmatched():
        if node_process.poll() is not None:
            print(f"demo: the node exited with status {node_process.returncode}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"demo: gave up after {NODE_START_TIMEOUT_S:.0f} s waiting for "
                  f"{', '.join(waiting)} to match this demo", file=sys.stderr)
            return 1
        time.sleep(0.2)
    # A parameter file may fix the input at best effort: then go on after a while regardless.
    follow_deadline = time.monotonic() + INPUT_FOLLOW_TIMEOUT_S
    while not camera.input_reliable() and time.monotonic() < follow_deadline:
        time.sleep(0.1)
    latencies = []
    started = time.monotonic()
    for index, rgb in enumerate(itertools.islice(source, frames)):
        sent = time.monotonic()
        message, stamp = camera.new_frame(rgb)
        sends = 0
        while True:
            camera.publisher.publish(message)
            sends += 1
            missing = camera.missing_answers(stamp, RESEND_AFTER_S)
            if not missing:
                break
            if node_process.poll() is not None:
                print(f"demo: the node exited with status {node_process.returncode}",
                      file=sys.stderr)
                return 1
            if time.monotonic() - sent > FRAME_TIMEOUT_S:
                topics = ", ".join(ANSWER_TOPICS[name] for name in missing)
                print(f"demo: gave up on frame {index} after {FRAME_TIMEOUT_S:.0f} s "
                      f"({sends} sends): waiting for {topics}", file=sys.stderr)
                return 1
        latencies.append(time.monotonic() - sent)
        answers = camera.take_answers(stamp)
        labels_msg, overlay_msg = answers["labels"], answers["overlay"]
        labels = np.frombuffer(bytes(labels_msg.data), np.uint8).reshape(
            labels_msg.height, labels_msg.step)[:, : labels_msg.width]
        cv2.imwrite(str(output_dir / f"frame_{index:04d}_labels.png"), labels)
        overlay_rgb = image_msg_to_rgb(overlay_msg)
        cv2.imwrite(str(output_dir / f"frame_{index:04d}_overlay.png"), overlay_rgb[:, :, ::-1])
        fps = (index + 1) / (time.monotonic() - started)
        resent = f", sent {sends} times" if sends > 1 else ""
        print(f"frame {index + 1}/{frames}: {rgb.shape[0]}x{rgb.shape[1]}, "
              f"latency {1000 * latencies[-1]:.0f} ms{resent}, {fps:.1f} FPS, "
              f"classes {sorted(np.unique(labels).tolist())}", flush=True)
    median = 1000 * float(np.median(latencies))
    print(f"demo: {len(latencies)} frames, median latency {median:.0f} ms, "
          f"{len(latencies) / (time.monotonic() - started):.1f} FPS; results in {output_dir}/")
    return 0
