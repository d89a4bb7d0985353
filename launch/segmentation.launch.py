"""Start the FBSNet segmentation node with its parameter file and a camera remapping.

    ros2 launch fbsnet_ros segmentation.launch.py camera_topic:=/front/image_raw
    ros2 launch fbsnet_ros segmentation.launch.py managed:=true autostart:=false

Outputs appear as <namespace>/fbsnet/labels, color_mask, overlay, camera_info and label_info.
The camera's camera_info is read beside its image topic (/front/camera_info above) unless
camera_info_topic names another. managed:=true starts the lifecycle node instead of the plain
one; autostart:=true (default) configures and activates it at once, autostart:=false leaves it
unconfigured for a lifecycle manager (Nav2's lifecycle_manager, `ros2 lifecycle set`).

large_frames:=true loads config/fastdds_large_frames.xml (Fast DDS, 64 MB shared memory) into
every process this launch starts after it: the node, so best-effort consumers get its large
outputs, and a camera driver added to this launch description, so the node gets its large
best-effort frames.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from fbsnet_ros.ros.compat import FASTDDS_PROFILES_FILE_VARIABLES
from fbsnet_ros.ros.names import CAMERA_INFO_TOPIC, CAMERA_TOPIC, NODE_NAME


def generate_launch_description() -> LaunchDescription:
    share_directory = get_package_share_directory("fbsnet_ros")
    default_params_file = os.path.join(share_directory, "config", "segmentation.yaml")
    large_frames_profile = os.path.join(share_directory, "config", "fastdds_large_frames.xml")
    # The same parameters, namespace and topics for the plain and the managed node.
    node_settings = {
        "package": "fbsnet_ros",
        "name": NODE_NAME,
        "namespace": LaunchConfiguration("namespace"),
        "parameters": [LaunchConfiguration("params_file")],
        # The node subscribes to these absolute names: camera_topic and camera_info_topic
        # remap exactly them.
        "remappings": [(CAMERA_TOPIC, LaunchConfiguration("camera_topic")),
                       (CAMERA_INFO_TOPIC, LaunchConfiguration("camera_info_topic"))],
        "output": "screen",
    }
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=default_params_file,
            description="YAML with the node's parameters (weights, device, overlay_alpha...)"),
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="namespace for the node and its outputs"),
        DeclareLaunchArgument(
            "camera_topic", default_value=CAMERA_TOPIC,
            description="sensor_msgs/Image topic to segment (its /compressed sibling when "
                        "input_transport is compressed)"),
        DeclareLaunchArgument(
            "camera_info_topic",
            # The sibling of camera_topic: /front/image_raw -> /front/camera_info.
            default_value=[PythonExpression([
                "'", LaunchConfiguration("camera_topic"), "'.rsplit('/', 1)[0] + '/camera_info'"])],
            description="sensor_msgs/CameraInfo topic republished with each label image's "
                        "header on ~/camera_info (default: camera_info beside camera_topic)"),
        DeclareLaunchArgument(
            "managed", default_value="false",
            description="true: start the lifecycle node segmentation_lifecycle_node instead "
                        "of the plain segmentation_node"),
        DeclareLaunchArgument(
            "autostart", default_value="true",
            description="with managed:=true: true configures and activates at launch; false "
                        "waits unconfigured for a lifecycle manager"),
        DeclareLaunchArgument(
            "large_frames", default_value="false",
            description="true: processes started by this launch load the Fast DDS profile "
                        "for frames over 512 KB to best-effort readers (64 MB of /dev/shm each)"),
        # Read by Fast DDS when a process creates its first participant: one name on
        # Kilted's Fast DDS 3, the other on Jazzy's and Humble's Fast DDS 2.
        *[SetEnvironmentVariable(variable, large_frames_profile,
                                 condition=IfCondition(LaunchConfiguration("large_frames")))
          for variable in FASTDDS_PROFILES_FILE_VARIABLES],
        Node(executable="segmentation_node",
             condition=UnlessCondition(LaunchConfiguration("managed")), **node_settings),
        Node(executable="segmentation_lifecycle_node",
             arguments=["--autostart", LaunchConfiguration("autostart")],
             condition=IfCondition(LaunchConfiguration("managed")), **node_settings),
    ])
