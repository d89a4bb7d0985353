"""Header stamps as integer nanoseconds: how the node's answers, bag frames and their ground
truth are matched with the frames they belong to."""

from __future__ import annotations

NANOSECONDS_PER_SECOND = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (of rclpy or rosbags) as integer nanoseconds."""
    return int(stamp.sec) * NANOSECONDS_PER_SECOND + int(stamp.nanosec)


def ns_to_sec_nanosec(nanoseconds: int) -> tuple[int, int]:
    """Integer nanoseconds as builtin_interfaces/Time's (sec, nanosec)."""
    return divmod(int(nanoseconds), NANOSECONDS_PER_SECOND)
