"""Which side needs the large-frames profile? Two bare rclpy processes, no segmentation node.

A writer process sends --count messages of --bytes, one at a time; a reader process (keep-last
1, --reader-reliability) acknowledges each on a small reliable topic; the writer waits up to
--timeout for each acknowledgement and prints how many came back. --profile says which
process loads config/fastdds_large_frames.xml (FASTDDS_DEFAULT_PROFILES_FILE), so each
combination of writer and reader transports can be tried:

    for profile in none reader writer both; do
      .venv/bin/python bench/dds_large_messages.py --bytes 1000000 --profile $profile
    done
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from fbsnet_ros.ros.compat import FASTDDS_PROFILES_FILE_VARIABLES, fastdds_profiles_env

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_frames.xml"
DATA_TOPIC, ACK_TOPIC = "/large_messages", "/large_messages_ack"
MATCH_TIMEOUT_S = 30.0


def qos(reliability: str, depth: int):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=(
        ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT))


def spin_until(node, condition, timeout: float) -> bool:
    import rclpy

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.05)
    return True


def reader(arguments) -> None:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    rclpy.init()
    node = Node("large_messages_reader")
    acknowledge = node.create_publisher(Image, ACK_TOPIC, qos("reliable", 10))
    node.create_subscription(Image, DATA_TOPIC,
                             lambda message: acknowledge.publish(Image(header=message.header)),
                             qos(arguments.reader_reliability, 1))
    # Until the writer goes away (it kills this process when done).
    spin_until(node, lambda: False, MATCH_TIMEOUT_S + arguments.count * arguments.timeout + 30)


def writer(arguments) -> int:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    rclpy.init()
    node = Node("large_messages_writer")
    publisher = node.create_publisher(Image, DATA_TOPIC, qos(arguments.writer_reliability, 5))
    acknowledged: set[str] = set()
    node.create_subscription(Image, ACK_TOPIC,
                             lambda message: acknowledged.add(message.header.frame_id),
                             qos("reliable", 10))
    if not spin_until(node, lambda: publisher.get_subscription_count() > 0
                      and node.count_publishers(ACK_TOPIC) > 0, MATCH_TIMEOUT_S):
        print("no reader matched", file=sys.stderr)
        return 1
    spin_until(node, lambda: False, 1.0)  # both directions settled
    payload = bytes(arguments.bytes)
    for index in range(arguments.count):
        message = Image(height=1, width=arguments.bytes, step=arguments.bytes, encoding="mono8",
                        data=payload)
        message.header.frame_id = str(index)
        publisher.publish(message)
        spin_until(node, lambda index=index: str(index) in acknowledged, arguments.timeout)
    print(f"{arguments.bytes} bytes, {arguments.writer_reliability} writer -> "
          f"{arguments.reader_reliability} reader, profile loaded by {arguments.profile}: "
          f"{len(acknowledged)}/{arguments.count} arrived", flush=True)
    return 0


def environment(loads_profile: bool) -> dict:
    variables = {name: value for name, value in os.environ.items()
                 if name not in FASTDDS_PROFILES_FILE_VARIABLES}
    variables["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if loads_profile:
        variables.update(fastdds_profiles_env(PROFILE))
    return variables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=1_000_000)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per message")
    parser.add_argument("--writer-reliability", default="reliable",
                        choices=["reliable", "best_effort"])
    parser.add_argument("--reader-reliability", default="best_effort",
                        choices=["reliable", "best_effort"])
    parser.add_argument("--profile", default="none", choices=["none", "reader", "writer", "both"])
    parser.add_argument("--role", default=None, choices=["reader", "writer"],
                        help=argparse.SUPPRESS)  # set for the two child processes
    arguments = parser.parse_args(argv)
    if arguments.role == "reader":
        reader(arguments)
        return 0
    if arguments.role == "writer":
        return writer(arguments)

    command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
    reader_process = subprocess.Popen(
        [*command, "--role", "reader"],
        env=environment(arguments.profile in ("reader", "both")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return subprocess.run([*command, "--role", "writer"],
                              env=environment(arguments.profile in ("writer", "both"))).returncode
    finally:
        reader_process.kill()
        reader_process.wait()


if __name__ == "__main__":
    sys.exit(main())
