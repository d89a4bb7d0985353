"""Inference: checkpoints, the Segmenter engine, palettes and overlays (no ROS here)."""

from fbsnet_ros.checkpoint import (
    CheckpointError,
    ModelMetadata,
    load_model,
    save_inference_checkpoint,
)
from fbsnet_ros.inference.engine import Segmenter, default_weights_path
from fbsnet_ros.inference.visualize import colorize, overlay, palette_array

__all__ = [
    "CheckpointError",
    "ModelMetadata",
    "Segmenter",
    "colorize",
    "default_weights_path",
    "load_model",
    "overlay",
    "palette_array",
    "save_inference_checkpoint",
]
