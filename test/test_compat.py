"""fbsnet_ros.ros.compat gives QoS event callbacks that this distro's rclpy accepts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import rclpy
from rclpy.node import Node
from std_msgs.msg import Header

from fbsnet_ros.ros.compat import (
    FASTDDS_PROFILES_FILE_VARIABLES,
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
    UnsupportedEventTypeError,
    fastdds_profiles_env,
    matched_publishers,
    parameter_override_names,
)


def ignore(_event) -> None:
    pass


def test_event_callbacks_attach_to_a_publisher_and_a_subscription():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("compat_probe", context=context)
        try:
            node.create_publisher(Header, "probe", 1, event_callbacks=PublisherEventCallbacks(
                incompatible_qos=ignore))
            try:
                # The keywords the node passes; message_lost depends on the RMW's support.
                node.create_subscription(Header, "probe", ignore, 1,
                                         event_callbacks=SubscriptionEventCallbacks(
                                             incompatible_qos=ignore, message_lost=ignore))
            except UnsupportedEventTypeError:
                node.create_subscription(Header, "probe", ignore, 1,
                                         event_callbacks=SubscriptionEventCallbacks(
                                             incompatible_qos=ignore))
            assert node.count_subscribers("probe") == 1
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_matched_publishers_counts_the_publishers_a_subscription_has_matched():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("compat_probe", context=context)
        try:
            subscription = node.create_subscription(Header, "matched_probe", ignore, 1)
            assert matched_publishers(node, subscription) == 0
            node.create_publisher(Header, "matched_probe", 1)
            deadline = time.monotonic() + 10.0
            while matched_publishers(node, subscription) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert matched_publishers(node, subscription) == 1
            # Humble's Subscription has no get_publisher_count: the graph's count stands in.
            humble_like = SimpleNamespace(topic_name=subscription.topic_name)
            assert matched_publishers(node, humble_like) == 1
            assert matched_publishers(node, SimpleNamespace(topic_name="/nobody")) == 0
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_parameter_override_names_lists_what_was_given_declared_or_not(tmp_path):
    # The node refuses misspelt parameters with this: it must see -p and --params-file values
    # that nobody declares, including an empty list (which rclpy cannot type).
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    input_size: []\n    weigths: x\n")
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(params), "-p",
                                      "max_rate_hz:=2.0"])
    try:
        node = Node("compat_probe", context=context)
        try:
            assert parameter_override_names(node) >= {"input_size", "weigths", "max_rate_hz"}
            assert not node.has_parameter("weigths")
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_fastdds_reads_the_profiles_file_named_by_the_helper(tmp_path):
    """A node started with fastdds_profiles_env loads that file: a broken one is reported."""
    broken = tmp_path / "broken_profiles.xml"
    broken.write_text("<profiles><participant>")
    env = {name: value for name, value in os.environ.items()
           if name not in FASTDDS_PROFILES_FILE_VARIABLES}
    start_a_node = ("import rclpy\nfrom rclpy.node import Node\n"
                    "rclpy.init()\nNode('profile_probe').destroy_node()\nrclpy.try_shutdown()\n")
    result = subprocess.run([sys.executable, "-c", start_a_node],
                            env={**env, **fastdds_profiles_env(broken)}, capture_output=True,
                            text=True, timeout=120)
    assert str(broken) in result.stdout + result.stderr
