"""The ROS names the node, the bag tools, the demo, the launch file, the benches and the tests
share: one home, so a topic is spelled once.

Nothing here imports rclpy: the command line and the launch file import it too.
"""

from __future__ import annotations

# The node's default name; its outputs are private topics under it.
NODE_NAME = "fbsnet"

# The node subscribes to this absolute name; users remap exactly it to their camera (the
# launch file's camera_topic). bag-from-images records its frames here.
CAMERA_TOPIC = "/camera/image_raw"
# image_transport's sibling convention: a camera's calibration lives beside its image topic.
CAMERA_INFO_NAME = "camera_info"
# Remapping exactly this name overrides the sibling (the launch file's camera_info_topic).
CAMERA_INFO_TOPIC = "/camera/" + CAMERA_INFO_NAME
# image_transport publishes the compressed stream under the raw topic's name plus this suffix.
COMPRESSED_SUFFIX = "/compressed"
# Ground-truth label images beside the camera, in bags bag-from-images writes.
GROUND_TRUTH_TOPIC = "/camera/labels"
CAMERA_FRAME_ID = "camera"

# The node's outputs under its default name, and what bag-eval writes in their place.
LABELS_TOPIC = f"/{NODE_NAME}/labels"
OVERLAY_TOPIC = f"/{NODE_NAME}/overlay"
# How the node's start-up log line begins once it serves frames (demo, benches, tests wait for
# it).
READY_LINE = "segmenting"
# The name of the node's status on /diagnostics, under its default name.
DIAGNOSTICS_STATUS_NAME = f"{NODE_NAME}: segmentation"
