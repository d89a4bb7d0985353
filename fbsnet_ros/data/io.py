"""Reading images and label maps, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class DatasetError(RuntimeError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        problem = "missing" if not Path(path).exists() else "unreadable or not an image"
        raise DatasetError(f"{path}: image {problem}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """A label map file as HxW uint8 class ids."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        problem = "missing" if not Path(path).exists() else "unreadable or not an image"
        raise DatasetError(f"{path}: label {problem}")
    if label.ndim != 2:
        raise DatasetError(f"{path}: label must be single-channel, got shape {label.shape}")
    if label.dtype != np.uint8:
        raise DatasetError(f"{path}: label must be 8-bit, got {label.dtype}")
    return label


def check_same_size(image: np.ndarray, label: np.ndarray, image_path, label_path) -> None:
    if image.shape[:2] != label.shape:
        raise DatasetError(
            f"{label_path}: label is {label.shape[0]}x{label.shape[1]} but image "
            f"{image_path} is {image.shape[0]}x{image.shape[1]}"
        )
