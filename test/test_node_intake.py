"""FrameIntake over real DDS, in this process: camera frames taken on the intake thread, never
by the executor; a failing callback reported and survived; a subscription replaced while
running; QoS events served on the same thread; nothing taken once stopped.

The node tests (test_node*.py) run it inside the real node; this is the contract on its own,
with camera-sized frames from a reliable publisher (a camera driver's QoS).
"""

from __future__ import annotations

import array
import threading
import time

import pytest
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import wait_until
from sensor_msgs.msg import Image

from fbsnet_ros.ros.compat import SubscriptionEventCallbacks
from fbsnet_ros.ros.frame_intake import FrameIntake, IntakeGroup
from fbsnet_ros.ros.node_core import INTAKE_THREAD

TOPIC = "/intake_test/image_raw"
CAMERA_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                        reliability=ReliabilityPolicy.RELIABLE)
HEIGHT, WIDTH = 480, 640
TIMEOUT_S = 20.0


def frame(index: int) -> Image:
    message = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=3 * WIDTH)
    message.header.stamp.sec = index
    message.data = array.array("B", bytes([index % 256]) * (3 * HEIGHT * WIDTH))
    return message


class Taken:
    """What the intake's callbacks saw: frame indices, and the threads they ran on."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.lock = threading.Lock()
        self.indices: list[int] = []
        self.threads: set[str] = set()
        self.errors: list[tuple[str, str]] = []
        self.events: list[str] = []
        self.fail_on = fail_on

    def on_frame(self, message: Image) -> None:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            index = message.header.stamp.sec
            if index == self.fail_on:
                raise ValueError(f"frame {index} refused by the test")
            assert len(message.data) == 3 * HEIGHT * WIDTH
            self.indices.append(index)

    def on_error(self, reason: str, details: str) -> None:
        with self.lock:
            self.errors.append((reason, details))

    def on_incompatible(self, info) -> None:
        with self.lock:
            self.events.append(threading.current_thread().name)

    def snapshot(self) -> list[int]:
        with self.lock:
            return list(self.indices)


@pytest.fixture
def ros():
    """A node spun by a SingleThreadedExecutor in a background thread, and a camera publisher
    in a context of its own (another participant, as a driver would be)."""
    context, camera_context = rclpy.Context(), rclpy.Context()
    rclpy.init(context=context)
    rclpy.init(context=camera_context)
    node = Node("intake_test", context=context)
    camera = Node("intake_test_camera", context=camera_context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    yield node, camera
    rclpy.try_shutdown(context=context)
    rclpy.try_shutdown(context=camera_context)
    spinner.join(timeout=10)
    executor.shutdown()
    node.destroy_node()
    camera.destroy_node()


def subscribe(node: Node, group: IntakeGroup, taken: Taken):
    return node.create_subscription(
        Image, TOPIC, taken.on_frame, CAMERA_QOS, callback_group=group,
        event_callbacks=SubscriptionEventCallbacks(incompatible_qos=taken.on_incompatible))


def test_intake_takes_frames_the_executor_leaves_alone(ros):
    node, camera = ros
    taken = Taken(fail_on=4)
    group = IntakeGroup()
    subscription = subscribe(node, group, taken)
    publisher = camera.create_publisher(Image, TOPIC, CAMERA_QOS)
    # Matched both ways before anything is published.
    wait_until(lambda: publisher.get_subscription_count() == 1
               and node.count_publishers(TOPIC) == 1, TIMEOUT_S, "camera and intake matched")

    # Not started: the executor spins the node but never runs the intake group's subscription;
    # the frames wait in its (reliable, 10 deep) history.
    for index in range(1, 4):
        publisher.publish(frame(index))
    time.sleep(1.0)
    assert taken.snapshot() == []

    intake = FrameIntake(node.context, on_error=taken.on_error)
    intake.start([subscription])
    wait_until(lambda: taken.snapshot() == [1, 2, 3], TIMEOUT_S, "the waiting frames")
    # Frame 4's callback raises: reported with its traceback, and the intake goes on.
    for index in range(4, 7):
        publisher.publish(frame(index))
    wait_until(lambda: taken.snapshot() == [1, 2, 3, 5, 6], TIMEOUT_S, "frames 5 and 6")
    assert len(taken.errors) == 1
    reason, details = taken.errors[0]
    assert reason.startswith("ValueError") and "frame 4 refused by the test" in details
    assert taken.threads == {INTAKE_THREAD}

    # A subscription replaced while running (as the node does when the camera's reliability
    # changes): the old one is destroyed, frames keep coming through the new one.
    replacement = subscribe(node, group, taken)
    wait_until(lambda: publisher.get_subscription_count() == 2, TIMEOUT_S, "both matched")
    intake.replace(subscription, replacement)
    node.destroy_subscription(subscription)
    wait_until(lambda: publisher.get_subscription_count() == 1, TIMEOUT_S, "the old one gone")
    for index in range(7, 10):
        publisher.publish(frame(index))
    wait_until(lambda: taken.snapshot()[-3:] == [7, 8, 9], TIMEOUT_S, "frames 7-9")
    assert taken.snapshot() == [1, 2, 3, 5, 6, 7, 8, 9]

    # The subscription's QoS events run on the intake thread too: a best-effort publisher
    # cannot serve this reliable subscription.
    best_effort = camera.create_publisher(
        Image, TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    wait_until(lambda: taken.events, TIMEOUT_S, "the incompatible QoS event")
    assert set(taken.events) == {INTAKE_THREAD}
    camera.destroy_publisher(best_effort)

    # Stopped: the thread has let go; frames published now are not taken.
    intake.stop()
    assert not any(thread.name == INTAKE_THREAD for thread in threading.enumerate())
    publisher.publish(frame(10))
    time.sleep(1.0)
    assert taken.snapshot() == [1, 2, 3, 5, 6, 7, 8, 9]
    node.destroy_subscription(replacement)


def test_intake_stops_promptly_when_the_context_shuts_down(ros):
    node, _ = ros
    taken = Taken()
    intake = FrameIntake(node.context, on_error=taken.on_error)
    intake.start([subscribe(node, IntakeGroup(), taken)])
    rclpy.try_shutdown(context=node.context)
    # The thread notices at its next wake-up (at most WAIT_TIMEOUT_NS), quietly.
    wait_until(lambda: not any(thread.name == INTAKE_THREAD for thread in threading.enumerate()),
               5.0, "the intake thread to end")
    intake.stop()
    assert taken.errors == []


def test_subscriptions_replaced_under_a_stream_of_frames_cause_no_errors(ros):
    """The node replaces the camera subscription when the camera's reliability changes, from the
    executor's thread, while frames keep coming: the intake lets go of the old one and goes on
    with the new one without reporting an error, however the two threads interleave."""
    node, camera = ros
    taken = Taken()
    group = IntakeGroup()
    subscription = subscribe(node, group, taken)
    publisher = camera.create_publisher(Image, TOPIC, CAMERA_QOS)
    wait_until(lambda: publisher.get_subscription_count() == 1
               and node.count_publishers(TOPIC) == 1, TIMEOUT_S, "camera and intake matched")
    intake = FrameIntake(node.context, on_error=taken.on_error)
    intake.start([subscription])
    streaming = threading.Event()
    streaming.set()

    def stream():
        index = 0
        while streaming.is_set():
            index += 1
            publisher.publish(frame(index))
            time.sleep(0.005)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        for _ in range(30):
            count = len(taken.snapshot())
            replacement = subscribe(node, group, taken)
            intake.replace(subscription, replacement)
            node.destroy_subscription(subscription)
            subscription = replacement
            # Frames arrive through the replacement before the next swap.
            wait_until(lambda count=count: len(taken.snapshot()) > count + 2, TIMEOUT_S,
                       "frames through the replacement")
    finally:
        streaming.clear()
        streamer.join(timeout=5)
    intake.stop()
    node.destroy_subscription(subscription)
    assert taken.errors == [], taken.errors[0][1]
