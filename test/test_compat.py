"""fbsnet_ros.ros.compat gives QoS event callbacks that this distro's rclpy accepts."""

from __future__ import annotations

import rclpy
from rclpy.node import Node
from std_msgs.msg import Header

from fbsnet_ros.ros.compat import (
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
    UnsupportedEventTypeError,
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
