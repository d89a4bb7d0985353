"""bag-play into the real node over DDS, recording its answers: slow replay answers every frame,
a flood is dropped without backlog. One node process (console script, random CamVid weights,
CompressedImage input made reliable through the QoS overrides) serves every test here.
"""

from __future__ import annotations

import pytest
from bag_helpers import read_topic, run_cli, stamp_ns
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import (
    READY_LINE,
    NodeProcess,
    reliable_subscription_override,
    wait_until,
    write_params_file,
)
from rosgraph_msgs.msg import Clock

from fbsnet_ros.ros.image_conversion import compressed_msg_to_rgb
from fbsnet_ros.ros.names import (
    CAMERA_TOPIC,
    COMPRESSED_SUFFIX,
    DIAGNOSTICS_STATUS_NAME,
    LABELS_TOPIC,
)
from fbsnet_ros.ros.stamps import stamp_to_ns

COMPRESSED_TOPIC = CAMERA_TOPIC + COMPRESSED_SUFFIX
SLOW_FRAMES, SLOW_RATE_HZ = 4, 1.0
# Faster than any CPU backend segments (the OpenVINO default answered all of 30 frames at
# 50 Hz on a quiet 2-core machine): the node must drop, not queue.
FLOOD_FRAMES, FLOOD_RATE_HZ = 60, 200.0
CAMVID_FRAMES = 6
# Seconds bag-play keeps recording after its last frame: the node's answer time, and then some.
ANSWER_WITHIN_S = 2.0
# Discovery plus a node busy on two shared cores: bag-play waits this long for the node.
WAIT_FOR_NODE_S = 30.0


def make_bag(camvid_root, folder, frames: int, rate_hz: float, start_s: int):
    """A jpeg camera bag of `frames` CamVid val frames (repeating), stamped from start_s."""
    images = folder / "images"
    images.mkdir(parents=True)
    lines = (camvid_root / "val.txt").read_text().splitlines()[:CAMVID_FRAMES]
    for index in range(frames):
        image = lines[index % len(lines)].split()[0]
        (images / f"{index:04d}.png").symlink_to(camvid_root / image)
    run_cli("bag-from-images", "--images", images, "--out", folder / "bag", "--rate", rate_hz,
            "--encoding", "jpeg", "--start-time", start_s)
    return folder / "bag"


@pytest.fixture(scope="module")
def bags(camvid_root, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("replay_bags")
    return {
        "single": make_bag(camvid_root, folder / "single", 1, 1.0, 1_700_000_000),
        "slow": make_bag(camvid_root, folder / "slow", SLOW_FRAMES, SLOW_RATE_HZ, 1_700_000_100),
        "flood": make_bag(camvid_root, folder / "flood", FLOOD_FRAMES, FLOOD_RATE_HZ,
                          1_700_000_200),
        "after_flood": make_bag(camvid_root, folder / "after", 1, 1.0, 1_700_000_300),
    }


@pytest.fixture(scope="module")
def replay_node(random_weights_built, probe, bags, tmp_path_factory):
    """The node on compressed input, warmed up: it has answered one frame already."""
    directory = tmp_path_factory.mktemp("replay_node")
    params = write_params_file(directory / "replay.yaml", {
        "weights": str(random_weights_built), "input_transport": "compressed",
        **reliable_subscription_override(COMPRESSED_TOPIC)})
    diagnostics = probe.recorder(DiagnosticArray, "/diagnostics")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")  # one torch thread is fastest on two shared cores
        node = NodeProcess(directory / "node.log", [params])
    try:
        node.wait_for_output(READY_LINE)
        # The first inference is slow (allocation, kernel choice): get it out of the way.
        run_cli("bag-play", "--bag", bags["single"], "--wait", WAIT_FOR_NODE_S)
        wait_until(lambda: node_counts(diagnostics).get("frames processed", 0) >= 1,
                   timeout=60, what="the node's first answer")
        yield diagnostics
    finally:
        node.stop()


def node_counts(diagnostics) -> dict[str, int]:
    """The frame counters of the node's latest status on /diagnostics ({} before the first)."""
    for array in reversed(list(diagnostics.messages)):
        for status in array.status:
            if status.name == DIAGNOSTICS_STATUS_NAME:
                return {value.key: int(value.value) for value in status.values
                        if value.key.startswith("frames ")}
    return {}


def next_counts(diagnostics) -> dict[str, int]:
    """The counters of the node's next status (it publishes one a second)."""
    seen = len(diagnostics.messages)
    wait_until(lambda: len(diagnostics.messages) > seen, timeout=10, what="diagnostics")
    return node_counts(diagnostics)


def test_slow_replay_answers_every_frame_at_its_decoded_size(replay_node, probe, bags,
                                                             tmp_path):
    clock = probe.recorder(Clock, "/clock")
    record = tmp_path / "labels"
    run_cli("bag-play", "--bag", bags["slow"], "--clock", "--record", record,
            "--wait", WAIT_FOR_NODE_S, "--linger", ANSWER_WITHIN_S)
    frames = read_topic(bags["slow"], COMPRESSED_TOPIC)
    labels = read_topic(record, LABELS_TOPIC)
    assert [stamp_ns(m) for _, m in labels] == [stamp_ns(m) for _, m in frames]
    for (_, frame), (log_ns, label) in zip(frames, labels):
        decoded_height, decoded_width = compressed_msg_to_rgb(frame).shape[:2]
        assert (label.encoding, label.height, label.width) == (
            "mono8", decoded_height, decoded_width)
        # Recorded on the playback clock (bag time), shortly after its frame.
        assert 0 <= log_ns - stamp_ns(label) < ANSWER_WITHIN_S * 1e9
    first, last = stamp_ns(frames[0][1]), stamp_ns(frames[-1][1])
    clock_ns = [stamp_to_ns(message.clock) for message in clock.messages]
    assert clock_ns, "no /clock while playing with --clock"
    assert first <= min(clock_ns) and max(clock_ns) <= last + (ANSWER_WITHIN_S + 1) * 1e9


def test_flood_is_dropped_without_backlog_and_recorded_as_published(replay_node, bags,
                                                                    tmp_path):
    before = next_counts(replay_node)
    run_cli("bag-play", "--bag", bags["flood"], "--record", tmp_path / "flood_labels",
            "--wait", WAIT_FOR_NODE_S, "--linger", ANSWER_WITHIN_S)
    after = next_counts(replay_node)
    sent = [stamp_ns(m) for _, m in read_topic(bags["flood"], COMPRESSED_TOPIC)]
    answered = [stamp_ns(m) for _, m in read_topic(tmp_path / "flood_labels", LABELS_TOPIC)]

    published = after["frames processed"] - before["frames processed"]
    assert len(answered) == published  # the recorder missed nothing the node sent
    assert 0 < published < FLOOD_FRAMES  # the node could not keep up at 200 Hz, and dropped
    assert after["frames dropped"] > before["frames dropped"]
    assert set(answered) <= set(sent)
    assert answered == sorted(set(answered))  # in order, each frame at most once
    assert answered[-1] == sent[-1]  # no backlog: the newest frame is the one served last

    # Straight after the flood, a new frame is answered at once, not after a queue.
    run_cli("bag-play", "--bag", bags["after_flood"], "--record", tmp_path / "after_labels",
            "--wait", WAIT_FOR_NODE_S, "--linger", ANSWER_WITHIN_S)
    assert len(read_topic(tmp_path / "after_labels", LABELS_TOPIC)) == 1
