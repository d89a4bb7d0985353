"""The node's confidence image and confidence threshold over real DDS, with the shipped weights.

Nav2's semantic segmentation layer pairs labels, confidence and label info by exact stamp:
the confidence must carry the labels' header and size, the threshold must turn exactly the
unsure pixels into 255, and LabelInfo must carry the threshold in use.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from ros_helpers import (
    LATCHED,
    READY_LINE,
    NodeProcess,
    camera_image,
    remapped,
    stamp_key,
    wait_for_answer,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import Image

from fbsnet_ros.data.io import read_rgb
from fbsnet_ros.inference import default_weights_path
from fbsnet_ros.ros.image_conversion import image_msg_to_rgb

LabelInfo = pytest.importorskip("vision_msgs.msg").LabelInfo

NAMESPACE = "/confidence_test"


def camvid_frame(camvid_root, height: int = 480, width: int = 640) -> Image:
    """A real street scene at a camera's size: sure and unsure pixels both."""
    line = (camvid_root / "val.txt").read_text().splitlines()[10]
    rgb = cv2.resize(read_rgb(camvid_root / line.split()[0]), (width, height),
                     interpolation=cv2.INTER_LINEAR)
    image = Image(height=height, width=width, encoding="rgb8", step=3 * width)
    image.header.frame_id = "front_camera"
    image.data = array.array("B", rgb.tobytes())
    return image


def mono8(message: Image) -> np.ndarray:
    assert message.encoding == "mono8"
    return np.frombuffer(bytes(message.data), np.uint8).reshape(message.height, message.width)


@pytest.mark.skipif(not default_weights_path().is_file(), reason="no shipped weights")
def test_confidence_image_and_threshold(probe, camvid_root, tmp_path):
    # The shipped weights and config (backend auto); the CPU so the test means the same on a
    # GPU machine.
    settings = write_params_file(tmp_path / "cpu.yaml", {"device": "cpu"})
    camera_topic = f"{NAMESPACE}/camera/image_raw"
    node = NodeProcess(tmp_path / "node.log", [settings], remapped(NAMESPACE, camera_topic))
    try:
        node.wait_for_output(READY_LINE)
        publisher = probe.publisher(Image, camera_topic)
        labels = probe.recorder(Image, f"{NAMESPACE}/fbsnet/labels")
        confidence = probe.recorder(Image, f"{NAMESPACE}/fbsnet/confidence")
        color_mask = probe.recorder(Image, f"{NAMESPACE}/fbsnet/color_mask")
        label_info = probe.recorder(LabelInfo, f"{NAMESPACE}/fbsnet/label_info", LATCHED)
        wait_until(lambda: publisher.get_subscription_count() > 0, what="node subscription")
        frame = camvid_frame(camvid_root)

        stamp = probe.new_stamp(frame)
        publisher.publish(frame)
        sure = wait_for_answer(confidence, stamp, lambda: publisher.publish(frame))
        plain = wait_for_answer(labels, stamp, lambda: publisher.publish(frame))
        # The same header and size as the labels: Nav2 pairs them by exact stamp.
        assert sure.header == plain.header and sure.header.frame_id == "front_camera"
        assert (sure.height, sure.width) == (plain.height, plain.width) == (480, 640)
        scores, classes = mono8(sure), mono8(plain)
        assert np.median(scores) > 200 and scores.min() < 128  # sure inside, unsure at borders
        assert not (classes == 255).any()  # threshold 0: every pixel labelled
        # Latched at start, then again with the camera's frame_id once the first frame came.
        info = label_info.wait_for(lambda message: message.header.frame_id == "front_camera")
        assert info is not None and info.threshold == 0.0

        result = probe.set_parameter(f"{NAMESPACE}/fbsnet", "confidence_threshold", 0.9)
        assert result.successful, result.reason
        # LabelInfo follows the threshold, latched like the first one.
        info = label_info.wait_for(lambda message: message.threshold == pytest.approx(0.9))
        assert info is not None, "label info was not republished with the new threshold"
        assert len(info.class_map) == 11

        stamp = probe.new_stamp(frame)
        publisher.publish(frame)
        thresholded = mono8(wait_for_answer(labels, stamp, lambda: publisher.publish(frame)))
        scores = mono8(wait_for_answer(confidence, stamp, lambda: publisher.publish(frame)))
        unsure = scores < 0.9 * 255
        assert 0.01 < unsure.mean() < 0.5
        assert np.array_equal(thresholded == 255, unsure)
        assert np.array_equal(thresholded[~unsure], classes[~unsure])
        # Unlabeled is drawn black in the colour mask.
        mask = color_mask.wait_for(lambda message: stamp_key(message.header) == stamp)
        assert mask is not None
        mask_rgb = image_msg_to_rgb(mask)
        assert (mask_rgb[unsure] == 0).all() and (mask_rgb[~unsure].max(axis=1) > 0).all()

        refused = probe.set_parameter(f"{NAMESPACE}/fbsnet", "confidence_threshold", 1.5)
        assert not refused.successful
    finally:
        node.stop()


def test_confidence_is_not_computed_without_a_subscriber(weights_params_file, probe, tmp_path):
    # Without a confidence subscriber nothing is published there, and labels still flow.
    namespace = "/no_confidence_test"
    camera_topic = f"{namespace}/camera/image_raw"
    node = NodeProcess(tmp_path / "node.log", [weights_params_file],
                       remapped(namespace, camera_topic))
    try:
        node.wait_for_output(READY_LINE)
        publisher = probe.publisher(Image, camera_topic)
        labels = probe.recorder(Image, f"{namespace}/fbsnet/labels")
        wait_until(lambda: publisher.get_subscription_count() > 0, what="node subscription")
        frame = camera_image(480, 640, "rgb8", seed=3)
        stamp = probe.new_stamp(frame)
        publisher.publish(frame)
        assert wait_for_answer(labels, stamp, lambda: publisher.publish(frame)) is not None
        # Only now subscribe: the confidence starts with the next frame.
        confidence = probe.recorder(Image, f"{namespace}/fbsnet/confidence")
        assert len(confidence) == 0
        stamp = probe.new_stamp(frame)
        publisher.publish(frame)
        answer = wait_for_answer(confidence, stamp, lambda: publisher.publish(frame))
        assert (answer.height, answer.width, answer.encoding) == (480, 640, "mono8")
    finally:
        node.stop()
