"""FBSNet semantic segmentation for ROS 2."""
