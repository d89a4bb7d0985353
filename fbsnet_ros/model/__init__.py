"""FBSNet in pure PyTorch: no training, data or ROS code lives here."""

from fbsnet_ros.model.fbsnet import (
    NAMED_CONFIGS,
    OUTPUT_STRIDE,
    FBSNet,
    FBSNetConfig,
    StageSpec,
    build_fbsnet,
    count_parameters,
    paper_table1_config,
)

__all__ = [
    "NAMED_CONFIGS",
    "OUTPUT_STRIDE",
    "FBSNet",
    "FBSNetConfig",
    "StageSpec",
    "build_fbsnet",
    "count_parameters",
    "paper_table1_config",
]
