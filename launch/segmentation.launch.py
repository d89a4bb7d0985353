"""Start the FBSNet segmentation node with its parameter file and a camera remapping.

    ros2 launch fbsnet_ros segmentation.launch.py camera_topic:=/front/image_raw

Outputs appear as <namespace>/fbsnet/labels, color_mask and overlay.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# The node subscribes to this absolute name; camera_topic remaps exactly it.
NODE_INPUT_TOPIC = "/camera/image_raw"


def generate_launch_description() -> LaunchDescription:
    default_params_file = os.path.join(
        get_package_share_directory("fbsnet_ros"), "config", "segmentation.yaml")
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=default_params_file,
            description="YAML with the node's parameters (weights, device, overlay_alpha...)"),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="namespace for the node and its outputs"),
        DeclareLaunchArgument(
            "camera_topic", default_value=NODE_INPUT_TOPIC,
            description="sensor_msgs/Image topic to segment (its /compressed sibling when "
                        "input_transport is compressed)"),
        Node(
            package="fbsnet_ros",
            executable="segmentation_node",
            name="fbsnet",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            remappings=[(NODE_INPUT_TOPIC, LaunchConfiguration("camera_topic"))],
            output="screen",
        ),
    ])
