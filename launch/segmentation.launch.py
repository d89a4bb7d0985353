"""Start the FBSNet segmentation node with its parameter file and a camera remapping.

    ros2 launch fbsnet_ros segmentation.launch.py camera_topic:=/front/image_raw

Outputs appear as <namespace>/fbsnet/labels, color_mask and overlay. large_frames:=true loads
config/fastdds_large_frames.xml (Fast DDS, 64 MB shared memory) into every process this launch
starts after it: the node, so best-effort consumers get its large outputs, and a camera driver
added to this launch description, so the node gets its large best-effort frames.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# The node subscribes to this absolute name; camera_topic remaps exactly it.
NODE_INPUT_TOPIC = "/camera/image_raw"
# Read by Fast DDS when a process creates its first participant.
FASTDDS_PROFILES_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def generate_launch_description() -> LaunchDescription:
    share_directory = get_package_share_directory("fbsnet_ros")
    default_params_file = os.path.join(share_directory, "config", "segmentation.yaml")
    large_frames_profile = os.path.join(share_directory, "config", "fastdds_large_frames.xml")
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
        DeclareLaunchArgument(
            "large_frames", default_value="false",
            description="true: processes started by this launch load the Fast DDS profile "
                        "for frames over 512 KB to best-effort readers (64 MB of /dev/shm each)"),
        SetEnvironmentVariable(
            FASTDDS_PROFILES_VARIABLE, large_frames_profile,
            condition=IfCondition(LaunchConfiguration("large_frames"))),
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
