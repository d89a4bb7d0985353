"""Test-side helpers for bags: the CLI run in-process, and a topic read back from a bag."""

from __future__ import annotations

from pathlib import Path

from fbsnet_ros.cli import main
from fbsnet_ros.ros.bag_tools import (
    COMPRESSED_IMAGE_TYPE,
    IMAGE_TYPE,
    bag_messages,
    deserialize,
    open_bag,
    topic_connections,
)
from fbsnet_ros.ros.stamps import stamp_to_ns


def run_cli(*argv) -> None:
    """`fbsnet-ros ARGV...` in this process (no interpreter and torch start-up); must succeed."""
    assert main([str(arg) for arg in argv]) == 0


def read_topic(bag: Path, topic: str) -> list[tuple[int, object]]:
    """(log time ns, message) of every image message on a topic, in bag order."""
    with open_bag(bag) as reader:
        connections = topic_connections(reader, bag, topic, (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE))
        return [(log_ns, deserialize(raw, connection.msgtype))
                for connection, log_ns, raw in bag_messages(reader, bag, connections)]


def stamp_ns(message) -> int:
    return stamp_to_ns(message.header.stamp)
