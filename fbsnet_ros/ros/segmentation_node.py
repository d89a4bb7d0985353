"""The FBSNet ROS 2 node: camera images in; class ids, a colour mask and an overlay out.

The plain (unmanaged) node: it loads the model and serves from start. Topics, parameters and
QoS are described in `node_base`; the frame work is the ROS-free `node_core`, shared with the
managed node in `lifecycle_node`.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from fbsnet_ros.ros.node_base import NODE_NAME, SegmentationNodeBase, StartupError, run_node
from fbsnet_ros.ros.node_core import ConfigurationError


class SegmentationNode(SegmentationNodeBase, Node):
    """Segments every camera frame it has time for and publishes labels, mask and overlay."""

    def __init__(self, **node_options) -> None:
        """node_options go to rclpy's Node: context, cli_args, parameter_overrides..."""
        super().__init__(NODE_NAME, **node_options)
        self.declare_settings()
        try:
            self.core.load(self.segmenter_settings())
        except ConfigurationError as error:
            raise StartupError(str(error)) from None
        self.open_outputs()
        self.start_serving()

    def destroy_node(self) -> None:
        # rclpy's shutdown also destroys a node whose __init__ failed before the core existed.
        if hasattr(self, "core"):
            self.stop_serving()
        super().destroy_node()


def main(args=None) -> int:
    """Console-script entry point; returns the process exit status."""
    return run_node(SegmentationNode, sys.argv if args is None else args, ros_args=args)


if __name__ == "__main__":
    sys.exit(main())
