"""What differs between the ROS 2 distros this package runs on (rclpy, Fast DDS), in one place.

Tested here: Jazzy (rclpy 7.1) and Kilted (rclpy 9.1). Humble (rclpy 3.3) as far as its API
reference tells. The node and tools import these names instead of checking the distro.

What else differs and is deliberately not used (it exists on Kilted only): `with rclpy.init()`,
`rclpy.try_shutdown(uninstall_handlers=...)`, `Node(rosout_qos_profile=...)`,
`create_subscription(content_filter_options=...)`, timer callbacks taking a `TimerInfo`,
`MultiThreadedExecutor.shutdown(wait_for_threads=...)`. QoS event callbacks `matched` and
`incompatible_type` do not exist on Humble; `incompatible_qos`, `message_lost`, `deadline` and
`liveliness` do on all three.

Fast DDS (rmw_fastrtps_cpp) reads its XML profiles file from FASTDDS_DEFAULT_PROFILES_FILE on
Kilted (Fast DDS 3) but from FASTRTPS_DEFAULT_PROFILES_FILE on Jazzy and Humble (Fast DDS 2):
set through the one name only, the large-frames profile is silently ignored on Jazzy
(test_node_transport's best-effort 1080p test: 0 of 10 frames answered on Jazzy; it passes
with both names set). Set both: Kilted then logs one deprecation warning for the old name.
"""

from __future__ import annotations

import os

try:  # Iron and later: Jazzy, Kilted (Kilted still has rclpy.qos_event, deprecated)
    from rclpy.event_handler import (
        PublisherEventCallbacks,
        SubscriptionEventCallbacks,
        UnsupportedEventTypeError,
    )
except ImportError:  # Humble
    from rclpy.qos_event import (  # type: ignore[no-redef]
        PublisherEventCallbacks,
        SubscriptionEventCallbacks,
        UnsupportedEventTypeError,
    )

# Fast DDS 3 (Kilted) first, then Fast DDS 2 (Jazzy, Humble).
FASTDDS_PROFILES_FILE_VARIABLES = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
)


def fastdds_profiles_env(profiles_file: str | os.PathLike[str]) -> dict[str, str]:
    """The environment that makes a new process load `profiles_file` on every distro."""
    return dict.fromkeys(FASTDDS_PROFILES_FILE_VARIABLES, os.fspath(profiles_file))


def matched_publishers(node, subscription) -> int:
    """Publishers matched with `subscription` on its own side. Subscription.get_publisher_count
    is Iron and later; Humble only knows the graph's count for the topic."""
    if hasattr(subscription, "get_publisher_count"):
        return subscription.get_publisher_count()
    return node.count_publishers(subscription.topic_name)


def parameter_override_names(node) -> set[str]:
    """The parameter names given to `node` (--params-file, -p, parameter_overrides=), declared
    or not, so that a misspelt one can be refused instead of silently ignored.

    rclpy offers no public accessor: Node._parameter_overrides holds them on Humble, Jazzy and
    Kilted alike (test_compat checks it on the distros installed here). The public way,
    automatically_declare_parameters_from_overrides, fails on an empty list such as the
    shipped config's `input_size: []` (rclpy cannot type it).
    """
    return set(node._parameter_overrides)


__all__ = [
    "FASTDDS_PROFILES_FILE_VARIABLES",
    "PublisherEventCallbacks",
    "SubscriptionEventCallbacks",
    "UnsupportedEventTypeError",
    "fastdds_profiles_env",
    "matched_publishers",
    "parameter_override_names",
]
