"""A camera in its own process, paced one frame at a time: how many frames does the node answer?

Publishes camera-sized frames on the node's input with the reliability a camera driver would
use, waits for each frame's answer on the node's outputs (matched by header stamp) before
sending the next, and reports frames answered out of frames sent, per output. Frames are sent
once: a frame with no complete answer within --timeout counts as lost, so the figure is the
transport's and the node's, not a retry loop's. With --warmup N, N frames go first, each sent
again (new stamp) until answered on every output, at most WARMUP_ATTEMPTS times, and not
counted: an answer on every output shows both sides of every pair of endpoints matched and the
node ready for the frame size, so the counted frames measure the steady state.

    .venv/bin/python bench/camera_qos.py --size 1080x1920 --reliability best_effort
    # the camera's side; Jazzy and Humble (Fast DDS 2) read FASTRTPS_DEFAULT_PROFILES_FILE
    export FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_frames.xml
    .venv/bin/python bench/camera_qos.py --size 1080x1920 --reliability best_effort

Run it beside a node started as users start it (`segmentation_node --ros-args --params-file
config/segmentation.yaml`), in the same ROS_DOMAIN_ID.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fbsnet_ros.ros.compat import FASTDDS_PROFILES_FILE_VARIABLES, matched_publishers
from fbsnet_ros.ros.names import CAMERA_TOPIC, NODE_NAME

# Bytes per pixel of the encodings a camera driver typically publishes.
BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "mono8": 1, "yuv422": 2, "yuv422_yuy2": 2}
RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE,
               "best_effort": ReliabilityPolicy.BEST_EFFORT}
# Camera drivers (usb_cam, v4l2_camera) publish keep-last with a small queue.
CAMERA_DEPTH = 5
# Discovery plus a node loading torch on two busy cores.
MATCH_TIMEOUT_S = 60.0
# How long a node following its publishers (input_reliability auto) may take to re-subscribe.
SETTLE_TIMEOUT_S = 10.0
# Sends of one warm-up frame before the camera gives up on it and goes on (reported).
WARMUP_ATTEMPTS = 3


def parse_size(text: str) -> tuple[int, int]:
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


class PacedCamera(Node):
    """Publishes frames and collects the node's answers by header stamp."""

    def __init__(self, *, topic: str, reliability: str, outputs: dict[str, str],
                 answer_reliability: str) -> None:
        super().__init__("fbsnet_paced_camera")
        self.topic = topic
        self.reliability = RELIABILITY[reliability]
        self.publisher = self.create_publisher(Image, topic, QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=CAMERA_DEPTH, reliability=self.reliability))
        answer_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=CAMERA_DEPTH,
                                reliability=RELIABILITY[answer_reliability])
        self.answers: dict[str, dict[tuple[int, int], Image]] = {name: {} for name in outputs}
        self.arrived = threading.Condition()
        self.output_subscriptions = [
            self.create_subscription(Image, topic_name,
                                     lambda message, name=name: self._on_answer(name, message),
                                     answer_qos)
            for name, topic_name in outputs.items()]

    def _on_answer(self, name: str, message: Image) -> None:
        with self.arrived:
            self.answers[name][(message.header.stamp.sec, message.header.stamp.nanosec)] = message
            self.arrived.notify_all()

    def matched(self) -> bool:
        return (self.publisher.get_subscription_count() > 0
                and all(matched_publishers(self, subscription) > 0
                        for subscription in self.output_subscriptions))

    def settled(self) -> bool:
        """The node's subscription now has our reliability (an `auto` node has followed us)."""
        return any(info.qos_profile.reliability == self.reliability
                   for info in self.get_subscriptions_info_by_topic(self.topic))

    def wait_for(self, stamp: tuple[int, int], timeout: float) -> dict[str, Image]:
        """The answers for stamp that arrived within timeout (all outputs, or fewer)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not all(stamp in answers for answers in self.answers.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.arrived.wait(remaining)
            return {name: answers.pop(stamp) for name, answers in self.answers.items()
                    if stamp in answers}


def camera_frame(height: int, width: int, encoding: str, frame_id: str) -> Image:
    step = width * BYTES_PER_PIXEL[encoding]
    pixels = np.random.default_rng(0).integers(0, 256, size=height * step, dtype=np.uint8)
    frame = Image(height=height, width=width, encoding=encoding, step=step)
    frame.header.frame_id = frame_id
    frame.data = array.array("B", pixels.tobytes())
    return frame


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(arguments) -> dict:
    height, width = arguments.size
    namespace = arguments.namespace.rstrip("/")
    outputs = {name: f"{namespace}/{NODE_NAME}/{name}" for name in arguments.outputs}
    camera = PacedCamera(topic=arguments.topic, reliability=arguments.reliability,
                         outputs=outputs, answer_reliability=arguments.answer_reliability)
    executor = SingleThreadedExecutor()
    executor.add_node(camera)
    spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
    spinner.start()
    report = {"size": [height, width], "encoding": arguments.encoding,
              "reliability": arguments.reliability,
              "answer_reliability": arguments.answer_reliability,
              "fastdds_profile": next((os.environ[name] for name in FASTDDS_PROFILES_FILE_VARIABLES
                                       if name in os.environ), ""),
              "sent": 0, "answered": 0, "answered_per_output": dict.fromkeys(outputs, 0),
              "warmup_sends": 0, "warmed_up": arguments.warmup == 0,
              "wrong": [], "latencies_ms": [], "unanswered": {}}
    try:
        if not wait_until(camera.matched, MATCH_TIMEOUT_S):
            raise SystemExit(f"camera_qos: no node on {arguments.topic} and "
                             f"{', '.join(outputs.values())} within {MATCH_TIMEOUT_S:.0f} s")
        report["settled"] = wait_until(camera.settled, SETTLE_TIMEOUT_S)
        frame = camera_frame(height, width, arguments.encoding, arguments.frame_id)
        if arguments.warmup:
            report["warmed_up"] = warm_up(camera, frame, arguments.warmup, arguments.timeout,
                                          report)
        for index in range(arguments.frames):
            frame.header.stamp.sec, frame.header.stamp.nanosec = 1 + index, 1000
            stamp = (1 + index, 1000)
            sent_at = time.monotonic()
            camera.publisher.publish(frame)
            report["sent"] += 1
            answers = camera.wait_for(stamp, arguments.timeout)
            for name, answer in answers.items():
                report["answered_per_output"][name] += 1
                if ((answer.height, answer.width) != (height, width)
                        or answer.header.frame_id != arguments.frame_id):
                    report["wrong"].append(
                        f"frame {index} {name}: {answer.height}x{answer.width} "
                        f"frame_id {answer.header.frame_id!r}")
            if len(answers) == len(outputs):
                report["answered"] += 1
                report["latencies_ms"].append(1000 * (time.monotonic() - sent_at))
            else:  # frame index: the outputs that did not answer it
                report["unanswered"][str(index)] = sorted(set(outputs) - set(answers))
            if arguments.interval:
                time.sleep(arguments.interval)
    finally:
        executor.shutdown()
        spinner.join(timeout=10)
        camera.destroy_node()
    return report


def warm_up(camera: PacedCamera, frame: Image, frames: int, timeout: float,
            report: dict) -> bool:
    """Send `frames` uncounted frames (stamps 0.n), each until answered on every output or
    WARMUP_ATTEMPTS sends; whether every one was answered."""
    sends = 0
    for _ in range(frames):
        for _attempt in range(WARMUP_ATTEMPTS):
            frame.header.stamp.sec, frame.header.stamp.nanosec = 0, sends
            camera.publisher.publish(frame)
            sends += 1
            report["warmup_sends"] = sends
            if len(camera.wait_for((0, sends - 1), timeout)) == len(camera.answers):
                break
        else:
            return False
    return True


def _spin(executor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def summary_line(report: dict) -> str:
    height, width = report["size"]
    per_output = ", ".join(f"{name} {count}" for name, count in
                           report["answered_per_output"].items())
    latencies = report["latencies_ms"]
    median = f", median {np.median(latencies):.0f} ms" if latencies else ""
    profile = " with the large-frames profile" if report["fastdds_profile"] else ""
    warmup = ""
    if report["warmup_sends"]:
        answered = "" if report["warmed_up"] else ", not all answered"
        warmup = f", after {report['warmup_sends']} warm-up send(s){answered}"
    return (f"{height}x{width} {report['encoding']}, {report['reliability']} publisher{profile}: "
            f"{report['answered']}/{report['sent']} answered ({per_output}){median}{warmup}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=(480, 640), help="HxW, e.g. 720x1280")
    parser.add_argument("--encoding", default="rgb8", choices=sorted(BYTES_PER_PIXEL))
    parser.add_argument("--reliability", default="reliable", choices=sorted(RELIABILITY))
    parser.add_argument("--answer-reliability", default="reliable", choices=sorted(RELIABILITY),
                        help="QoS of this process's subscriptions to the node's outputs")
    parser.add_argument("--outputs", nargs="+", default=["labels"],
                        choices=["labels", "color_mask", "overlay"])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for each frame's answers")
    parser.add_argument("--warmup", type=int, default=0,
                        help="uncounted frames first, each sent until answered")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="extra pause after each frame, seconds")
    parser.add_argument("--topic", default=CAMERA_TOPIC)
    parser.add_argument("--namespace", default="", help="the node's namespace")
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument("--json", default=None, help="write the report here")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    try:
        report = run(arguments)
    finally:
        rclpy.try_shutdown()
    print(summary_line(report), flush=True)
    for problem in report["wrong"]:
        print(f"wrong answer: {problem}")
    if arguments.json:
        with open(arguments.json, "w") as output:
            json.dump(report, output, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
