"""ROS 2 interface of fbsnet_ros: image message conversion and nodes."""
