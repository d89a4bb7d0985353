"""bag-play: replay a rosbag2 bag over DDS with rclpy, for machines without `ros2 bag play`.

Messages go out as recorded (the bag's serialised bytes, never re-encoded) at their recorded
spacing divided by the rate. With a clock rate, /clock carries the bag's time so nodes with
use_sim_time follow it. With a record path, the node's outputs are written to a new bag while
the bag plays, so the real node can be measured on a recorded drive; their log times are on
the playback clock (the bag's time), as `ros2 bag record --use-sim-time` would write them.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import rclpy
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from fbsnet_ros.ros.bag_tools import (
    IMAGE_TYPE,
    BagError,
    BagWriter,
    bag_messages,
    ns_to_stamp,
    open_bag,
    storage_of,
    topic_connections,
)
from fbsnet_ros.ros.compat import matched_publishers
from fbsnet_ros.ros.names import LABELS_TOPIC
from fbsnet_ros.ros.stamps import NANOSECONDS_PER_SECOND

log = logging.getLogger(__name__)

CLOCK_TOPIC = "/clock"
# Reliable publishers match reliable and best-effort (sensor-data) subscribers alike; a few
# deep, so a slow subscriber loses old frames rather than stalling the playback.
PLAYBACK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Deep enough that the recorder itself never drops what the node publishes.
RECORDER_DEPTH = 1000
DISCOVERY_POLL_S = 0.05


def message_class(message_type: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image; None when not installed."""
    package, _, name = message_type.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


class BagPlayer(Node):
    """Publishes a bag's topics in time (and /clock), and records other topics to a bag."""

    def __init__(self, topic_types: dict[str, str], *, clock_hz: float | None,
                 context) -> None:
        super().__init__("fbsnet_bag_play", context=context)
        self.playback_publishers = {
            topic: self.create_publisher(message_class(message_type), topic, PLAYBACK_QOS)
            for topic, message_type in topic_types.items()
        }
        self.clock_publisher = self.create_publisher(Clock, CLOCK_TOPIC, 10) if clock_hz else None
        self.clock_period_s = 1.0 / clock_hz if clock_hz else math.inf
        self.bag_start_ns = 0
        self.rate = 1.0
        self.playback_started_at: float | None = None
        self.recorder: BagWriter | None = None
        self.recorded_types: dict[str, str] = {}
        self.recorder_subscriptions: list = []

    def playback_time_ns(self) -> int:
        """The bag time now playing (its start before the first message goes out)."""
        if self.playback_started_at is None:
            return self.bag_start_ns
        elapsed = time.monotonic() - self.playback_started_at
        return self.bag_start_ns + round(elapsed * self.rate * NANOSECONDS_PER_SECOND)

    def publish_clock(self) -> None:
        if self.clock_publisher is not None:
            self.clock_publisher.publish(Clock(clock=ns_to_stamp(self.playback_time_ns())))

    def has_subscribers(self) -> bool:
        return any(p.get_subscription_count() > 0 for p in self.playback_publishers.values())

    def record(self, writer: BagWriter, topics: Sequence[str]) -> None:
        """Subscribe to `topics` with the type and reliability their publishers offer."""
        self.recorder = writer
        for topic in topics:
            offered = self.get_publishers_info_by_topic(topic)
            message_type = offered[0].topic_type if offered else IMAGE_TYPE
            best_effort = any(info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                              for info in offered)
            qos = QoSProfile(depth=RECORDER_DEPTH, reliability=(
                ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE))
            self.recorded_types[topic] = message_type
            self.recorder_subscriptions.append(self.create_subscription(
                message_class(message_type), topic,
                lambda raw, topic=topic: self._on_recorded(topic, raw), qos, raw=True))

    def recorder_matched(self) -> bool:
        """Every recorded topic's subscription is matched with a publisher."""
        return all(matched_publishers(self, subscription) > 0
                   for subscription in self.recorder_subscriptions)

    def _on_recorded(self, topic: str, raw: bytes) -> None:
        self.recorder.write_raw(topic, self.recorded_types[topic], raw, self.playback_time_ns())

    def play(self, messages, rate: float) -> dict[str, int]:
        """Publish (connection, log time, raw) at recorded offset / rate; counts per topic."""
        counts = dict.fromkeys(self.playback_publishers, 0)
        self.rate = rate
        next_clock_s = 0.0
        for connection, log_ns, raw in messages:
            if self.playback_started_at is None:
                self.bag_start_ns, self.playback_started_at = log_ns, time.monotonic()
            due_s = (log_ns - self.bag_start_ns) / NANOSECONDS_PER_SECOND / rate
            while (elapsed_s := time.monotonic() - self.playback_started_at) < due_s:
                if elapsed_s >= next_clock_s:
                    self.publish_clock()
                    next_clock_s = elapsed_s + self.clock_period_s
                time.sleep(max(0.0, min(due_s, next_clock_s) - elapsed_s))
            self.publish_clock()  # bag time reaches the message before the message does
            self.playback_publishers[connection.topic].publish(bytes(raw))
            counts[connection.topic] += 1
        return counts

    def wait_delivered(self, timeout_s: float) -> bool:
        """Until every matched subscriber has acknowledged what was played (reliable QoS). A
        player that exits first takes its last messages with it: a subscriber that has not yet
        matched this publisher drops them and asks again, and nobody is left to answer."""
        deadline = time.monotonic() + timeout_s
        delivered = all(publisher.wait_for_all_acked(
            Duration(nanoseconds=max(0, round((deadline - time.monotonic()) * 1e9))))
            for publisher in self.playback_publishers.values())
        if not delivered:
            log.warning("played messages not acknowledged by every subscriber after %.1f s",
                        timeout_s)
        return delivered

    def linger(self, seconds: float) -> None:
        """Keep the clock going while the answers to the last frames come in."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.publish_clock()
            time.sleep(min(remaining, self.clock_period_s))


def play_bag(bag: str | Path, *, rate: float = 1.0, topics: Sequence[str] | None = None,
             clock_hz: float | None = None, record: str | Path | None = None,
             record_topics: Sequence[str] = (LABELS_TOPIC,), record_storage: str | None = None,
             wait_s: float = 5.0, linger_s: float = 2.0) -> dict:
    """Replay `bag` (all its topics, or `topics`); returns counts of what went out and came in.

    Playing starts once something subscribes to a played topic and, when recording, every
    recorded topic has a publisher, or after `wait_s` seconds. After the last message the
    player waits (at most `wait_s`) until every subscriber has acknowledged what was played.
    Recording goes on `linger_s` seconds after that so the answers to the last frames are
    caught.
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if clock_hz is not None and not clock_hz > 0:
        raise ValueError(f"clock rate must be > 0 Hz, got {clock_hz}")
    with open_bag(bag) as reader:
        connections = _playable_connections(reader, bag, topics)
        messages = bag_messages(reader, bag, connections)
        context = rclpy.Context()
        rclpy.init(args=[], context=context)
        player = executor = spinner = None
        try:
            player = BagPlayer({c.topic: c.msgtype for c in connections}, clock_hz=clock_hz,
                               context=context)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(player)
            spinner = threading.Thread(target=executor.spin, daemon=True)
            spinner.start()
            if record is None:
                _wait_for(player.has_subscribers, wait_s, "subscriber to the played topics")
                published, recorded = player.play(messages, rate), {}
                player.wait_delivered(wait_s)
            else:
                with BagWriter(record, record_storage or storage_of(bag)) as writer:
                    try:
                        deadline = time.monotonic() + wait_s
                        _wait_for(lambda: all(player.count_publishers(t) for t in record_topics),
                                  wait_s, f"publisher of {', '.join(record_topics)}")
                        player.record(writer, record_topics)
                        # Matched both ways before the first frame, or its answer is lost.
                        _wait_for(lambda: player.has_subscribers() and player.recorder_matched(),
                                  deadline - time.monotonic(),
                                  "subscriber to the played topics and recorder match")
                        published = player.play(messages, rate)
                        player.wait_delivered(wait_s)
                        player.linger(linger_s)
                    finally:
                        executor.shutdown()  # no callback may write once the bag is closed
                    recorded = {topic: writer.counts.get(topic, 0) for topic in record_topics}
        finally:
            if executor is not None:
                executor.shutdown()
            if player is not None:
                player.destroy_node()
            rclpy.try_shutdown(context=context)
            if spinner is not None:
                spinner.join(timeout=5.0)
    return {"bag": str(bag), "rate": rate, "published": published, "clock_hz": clock_hz,
            "record": str(record) if record is not None else None, "recorded": recorded}


def _playable_connections(reader, bag, topics: Sequence[str] | None) -> list:
    """The connections to play: the named topics, or every topic whose type rclpy has."""
    every_type = [c.msgtype for c in reader.connections]
    connections = ([c for topic in topics for c in topic_connections(reader, bag, topic,
                                                                      every_type)]
                   if topics else list(reader.connections))
    playable = []
    for connection in connections:
        if message_class(connection.msgtype) is not None:
            playable.append(connection)
            continue
        problem = f"{bag}: topic {connection.topic}: {connection.msgtype} is not installed here"
        if topics:
            raise BagError(problem)
        log.warning("%s; not played", problem)
    if not playable:
        raise BagError(f"{bag}: no topic this machine can publish")
    return playable


def _wait_for(condition, timeout_s: float, what: str) -> bool:
    if timeout_s <= 0:  # the wait was spent on an earlier condition, which said so
        return condition()
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            log.warning("no %s after %.1f s; going on without", what, timeout_s)
            return False
        time.sleep(DISCOVERY_POLL_S)
    return True


def format_play_summary(summary: dict) -> str:
    published = ", ".join(f"{count} on {topic}" for topic, count in summary["published"].items())
    lines = [f"played {summary['bag']} at x{summary['rate']:g}: {published}"]
    if summary["clock_hz"]:
        lines.append(f"published {CLOCK_TOPIC} at {summary['clock_hz']:g} Hz")
    if summary["record"]:
        recorded = ", ".join(f"{count} on {topic}" for topic, count in summary["recorded"].items())
        lines.append(f"recorded {recorded} to {summary['record']}")
    return "\n".join(lines)
