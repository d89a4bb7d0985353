"""The rclpy names that differ between the ROS 2 distros this package runs on, in one place.

Tested here: Jazzy (rclpy 7.1) and Kilted (rclpy 9.1). Humble (rclpy 3.3) as far as its API
reference tells. The node and tools import these names instead of checking the distro.

What else differs and is deliberately not used (it exists on Kilted only): `with rclpy.init()`,
`rclpy.try_shutdown(uninstall_handlers=...)`, `Node(rosout_qos_profile=...)`,
`create_subscription(content_filter_options=...)`, timer callbacks taking a `TimerInfo`,
`MultiThreadedExecutor.shutdown(wait_for_threads=...)`. QoS event callbacks `matched` and
`incompatible_type` do not exist on Humble; `incompatible_qos`, `message_lost`, `deadline` and
`liveliness` do on all three.
"""

from __future__ import annotations

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

__all__ = ["PublisherEventCallbacks", "SubscriptionEventCallbacks", "UnsupportedEventTypeError"]
