"""Offline bag tools: bag-from-images and bag-eval on real CamVid frames, no ROS graph needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bag_helpers import read_topic, run_cli, stamp_ns

from fbsnet_ros.cli import EXIT_USER_ERROR, main
from fbsnet_ros.ros.bag_tools import (
    COMPRESSED_IMAGE_TYPE,
    IMAGE_TYPE,
    BagWriter,
    make_header,
    storage_of,
)
from fbsnet_ros.ros.image_conversion import labels_to_mono8_fields, rgb_to_image_fields
from fbsnet_ros.ros.names import (
    CAMERA_TOPIC,
    COMPRESSED_SUFFIX,
    GROUND_TRUTH_TOPIC,
    LABELS_TOPIC,
)

FRAMES = 6  # CamVid val frames per bag: enough classes to score, quick on a busy CPU
RATE_HZ = 10.0
START_TIME = "1700000000.5"
START_NS = 1_700_000_000_500_000_000
METRIC_TOLERANCE = 0.01  # percent, as in the reports


def assert_same_metrics(report: dict, reference: dict) -> None:
    assert report["frames"] == reference["frames"]
    assert report["miou"] == pytest.approx(reference["miou"], abs=METRIC_TOLERANCE)
    assert report["pixel_accuracy"] == pytest.approx(reference["pixel_accuracy"],
                                                     abs=METRIC_TOLERANCE)
    assert report["per_class_iou"].keys() == reference["per_class_iou"].keys()
    for name, iou in reference["per_class_iou"].items():
        assert report["per_class_iou"][name] == pytest.approx(iou, abs=METRIC_TOLERANCE), name


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """CI machines are small and shared; one thread runs these tiny models fastest there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def camvid_sequence(camvid_root, tmp_path_factory) -> Path:
    """Links to the first CamVid val frames and labels (named like their frames), and a list."""
    folder = tmp_path_factory.mktemp("camvid_sequence")
    lines = (camvid_root / "val.txt").read_text().splitlines()[:FRAMES]
    for name in ("images", "labels"):
        (folder / name).mkdir()
    for line in lines:
        image, label = line.split()
        (folder / "images" / Path(image).name).symlink_to(camvid_root / image)
        (folder / "labels" / Path(image).name).symlink_to(camvid_root / label)
    (folder / "val_subset.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def evaluate_report(camvid_root, camvid_sequence, random_checkpoint) -> dict:
    """`fbsnet-ros evaluate` on the same frames: the reference every bag score must equal."""
    report = camvid_sequence / "evaluate.json"
    run_cli("evaluate", "--weights", random_checkpoint, "--list",
            camvid_sequence / "val_subset.txt", "--data-root", camvid_root, "--report", report)
    return json.loads(report.read_text())


def make_camvid_bag(sequence: Path, out: Path, *options) -> Path:
    run_cli("bag-from-images", "--images", sequence / "images", "--labels", sequence / "labels",
            "--out", out, "--rate", RATE_HZ, "--start-time", START_TIME, *options)
    return out


@pytest.fixture(scope="module", params=("sqlite3", "mcap"))
def camvid_bag(request, camvid_sequence, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp(f"bag_{request.param}")
    return make_camvid_bag(camvid_sequence, folder / "camvid", "--storage", request.param)


@pytest.fixture(scope="module")
def bag_eval_run(camvid_bag, random_checkpoint) -> tuple[dict, Path]:
    """bag-eval of a CamVid bag against its label topic: (JSON report, output bag)."""
    out_bag = camvid_bag.parent / "fbsnet_labels"
    report = camvid_bag.parent / "bag_eval.json"
    run_cli("bag-eval", "--bag", camvid_bag, "--image-topic", CAMERA_TOPIC,
            "--gt-topic", GROUND_TRUTH_TOPIC, "--weights", random_checkpoint,
            "--out-bag", out_bag, "--report", report)
    return json.loads(report.read_text()), out_bag


def test_bag_eval_miou_equals_evaluate_on_the_same_frames(bag_eval_run, evaluate_report):
    report, _ = bag_eval_run
    assert_same_metrics(report, evaluate_report)
    assert report["frames_read"] == report["frames_scored"] == FRAMES
    assert report["frames_skipped"] == {}
    assert report["frames_without_ground_truth"] == 0
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["fps"] > 0


def test_output_bag_has_one_label_image_per_frame_with_its_stamp(bag_eval_run, camvid_bag):
    _, out_bag = bag_eval_run
    frames = read_topic(camvid_bag, CAMERA_TOPIC)
    labels = read_topic(out_bag, LABELS_TOPIC)
    assert len(frames) == len(labels) == FRAMES
    assert [stamp_ns(m) for _, m in labels] == [stamp_ns(m) for _, m in frames]
    assert [log_ns for log_ns, _ in labels] == [log_ns for log_ns, _ in frames]
    expected_stamps = [START_NS + round(i * 1e9 / RATE_HZ) for i in range(FRAMES)]
    assert [stamp_ns(m) for _, m in frames] == expected_stamps
    for (_, frame), (_, label) in zip(frames, labels):
        assert label.header.frame_id == frame.header.frame_id == "camera"
        assert (label.encoding, label.height, label.width) == ("mono8", frame.height, frame.width)
    assert storage_of(out_bag) == storage_of(camvid_bag)


def test_ground_truth_from_a_folder_scores_like_the_topic(bag_eval_run, camvid_bag,
                                                          random_checkpoint):
    topic_report, _ = bag_eval_run
    gt_dir = Path(f"{camvid_bag}_gt")  # written by bag-from-images next to the bag
    assert sorted(path.name for path in gt_dir.iterdir()) == [
        f"{START_NS + round(i * 1e9 / RATE_HZ)}.png" for i in range(FRAMES)]
    report = camvid_bag.parent / "bag_eval_gt_dir.json"
    run_cli("bag-eval", "--bag", camvid_bag, "--image-topic", CAMERA_TOPIC, "--gt-dir", gt_dir,
            "--weights", random_checkpoint, "--report", report)
    folder_report = json.loads(report.read_text())
    assert folder_report["frames_scored"] == FRAMES
    assert_same_metrics(folder_report, topic_report)


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_compressed_image_input(codec, camvid_sequence, random_checkpoint, evaluate_report,
                                tmp_path):
    bag = make_camvid_bag(camvid_sequence, tmp_path / "camvid", "--encoding", codec)
    frames = read_topic(bag, CAMERA_TOPIC + COMPRESSED_SUFFIX)
    assert len(frames) == FRAMES and all(codec in m.format for _, m in frames)
    report_path = tmp_path / "report.json"
    run_cli("bag-eval", "--bag", bag, "--image-topic", CAMERA_TOPIC + COMPRESSED_SUFFIX,
            "--gt-topic", GROUND_TRUTH_TOPIC, "--weights", random_checkpoint,
            "--out-bag", tmp_path / "out", "--report", report_path)
    report = json.loads(report_path.read_text())
    assert report["message_type"] == COMPRESSED_IMAGE_TYPE
    assert report["frames_scored"] == FRAMES
    if codec == "png":  # lossless: exactly the frames `evaluate` read from disk
        assert_same_metrics(report, evaluate_report)
    labels = read_topic(tmp_path / "out", LABELS_TOPIC)
    assert [(m.height, m.width) for _, m in labels] == [(360, 480)] * FRAMES
    assert [stamp_ns(m) for _, m in labels] == [stamp_ns(m) for _, m in frames]


def test_bad_frames_are_counted_and_skipped(random_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    truth = rng.integers(0, 11, (32, 48), dtype=np.uint8)
    depth = dict(rgb_to_image_fields(frame, "rgb8"), encoding="32FC1")
    short = dict(rgb_to_image_fields(frame, "rgb8"), data=b"\0" * 100)
    bag = tmp_path / "mixed"
    with BagWriter(bag, "sqlite3") as writer:
        def write(index, fields=None, truth_fields=None, raw=None):
            header, log_ns = make_header(1000 + index, "camera"), 1000 + index
            if truth_fields is not None:  # logged before its frame: matching is by stamp
                writer.write_image(GROUND_TRUTH_TOPIC, header, truth_fields, log_ns - 1)
            if raw is not None:
                writer.write_raw(CAMERA_TOPIC, IMAGE_TYPE, raw, log_ns)
            else:
                writer.write_image(CAMERA_TOPIC, header, fields, log_ns)

        write(0, rgb_to_image_fields(frame, "rgb8"), labels_to_mono8_fields(truth))
        write(1, depth, labels_to_mono8_fields(truth))
        write(2, short)
        write(3, rgb_to_image_fields(frame, "bgr8"))
        write(4, rgb_to_image_fields(frame, "rgb8"), labels_to_mono8_fields(truth[:16]))
        write(5, raw=b"\0\1\0\0garbage")
    report_path = tmp_path / "report.json"
    run_cli("bag-eval", "--bag", bag, "--image-topic", CAMERA_TOPIC,
            "--gt-topic", GROUND_TRUTH_TOPIC, "--weights", random_checkpoint,
            "--out-bag", tmp_path / "out", "--report", report_path)
    report = json.loads(report_path.read_text())
    assert report["frames_read"] == 6
    assert report["frames_segmented"] == 3
    assert sum(report["frames_skipped"].values()) == 3
    assert [entry["index"] for entry in report["skipped"]] == [1, 2, 5]
    reasons = " | ".join(report["frames_skipped"])
    assert "32FC1" in reasons and "data has 100 bytes" in reasons and "undecodable" in reasons
    assert report["frames_scored"] == 1
    assert report["frames_without_ground_truth"] == 1
    assert list(report["ground_truth_rejected"].values()) == [1]
    assert report["ground_truth_unmatched"] == 1  # frame 1's label: its frame was skipped
    assert len(read_topic(tmp_path / "out", LABELS_TOPIC)) == 3


@pytest.fixture
def unusable_bags(camvid_bag, tmp_path) -> dict[str, tuple[Path, str, str]]:
    """name -> (bag, image topic, what the error line must say)."""
    string_bag = tmp_path / "strings"
    with BagWriter(string_bag, "mcap") as writer:
        writer.write_raw(CAMERA_TOPIC, "std_msgs/msg/String",
                         b"\0\1\0\0\6\0\0\0hello\0\0\0", 1)
    truncated = tmp_path / "truncated"
    shutil.copytree(camvid_bag, truncated)
    for storage_file in truncated.glob("*.*"):
        if storage_file.suffix in (".db3", ".mcap"):
            storage_file.write_bytes(storage_file.read_bytes()[: storage_file.stat().st_size // 2])
    return {
        "missing bag": (tmp_path / "no_such_bag", CAMERA_TOPIC, "no such bag"),
        "missing topic": (camvid_bag, "/camera/nothing", "topic /camera/nothing is not in"),
        "unknown type": (string_bag, CAMERA_TOPIC,
                         f"topic {CAMERA_TOPIC} has message type std_msgs/msg/String"),
        "truncated": (truncated, CAMERA_TOPIC, "not a readable rosbag2 bag"),
    }


def test_unusable_bags_give_one_error_line_and_exit_status_2(unusable_bags, random_checkpoint,
                                                              capsys):
    for name, (bag, topic, expected) in unusable_bags.items():
        status = main(["bag-eval", "--bag", str(bag), "--image-topic", topic,
                       "--weights", str(random_checkpoint)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == EXIT_USER_ERROR, name
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"fbsnet-ros bag-eval: error: {bag}"), (name, lines)
        assert expected in lines[0], (name, lines)


def test_truncated_bag_fails_cleanly_from_the_shell(unusable_bags):
    bag, topic, expected = unusable_bags["truncated"]
    command = [str(Path(sys.executable).with_name("fbsnet-ros")), "bag-eval", "--bag", str(bag),
               "--image-topic", topic]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == EXIT_USER_ERROR
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_offline_bag_tools_run_without_ros(camvid_sequence, random_checkpoint, tmp_path):
    """bag-from-images and bag-eval need neither rclpy nor ROS message packages."""
    script = f"""
import sys
for ros_package in ("rclpy", "sensor_msgs", "std_msgs", "rosgraph_msgs"):
    sys.modules[ros_package] = None  # importing it now fails, as without a ROS install
from fbsnet_ros.cli import main
assert main(["bag-from-images", "--images", {str(camvid_sequence / "images")!r},
             "--out", {str(tmp_path / "bag")!r}, "--rate", "5"]) == 0
assert main(["bag-eval", "--bag", {str(tmp_path / "bag")!r}, "--image-topic", {CAMERA_TOPIC!r},
             "--weights", {str(random_checkpoint)!r}]) == 0
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert f"{FRAMES} frames read, {FRAMES} segmented" in result.stdout
