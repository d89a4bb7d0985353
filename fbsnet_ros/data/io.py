"""Reading images and label maps, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fbsnet_ros.data.classes import IGNORE_INDEX
from fbsnet_ros.errors import UserError

# Image files the datasets, `predict` and the frame sources read (OpenCV decodes them all).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(UserError, RuntimeError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


def _unreadable(path: str | Path, what: str) -> DatasetError:
    problem = "missing" if not Path(path).exists() else "unreadable or not an image"
    return DatasetError(f"{path}: {what} {problem}")


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise _unreadable(path, "image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, colours: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """A label map file as HxW uint8 class ids.

    Single-channel 8-bit files hold the ids themselves. With `colours` (RGB, one per class id),
    colour-coded files are accepted too: a pixel of colour k becomes id k, any other colour
    IGNORE_INDEX.
    """
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise _unreadable(path, "label")
    if label.dtype != np.uint8:
        raise DatasetError(f"{path}: label must be 8-bit, got {label.dtype}")
    if label.ndim == 3 and label.shape[2] == 3 and colours is not None:
        return colours_to_ids(cv2.cvtColor(label, cv2.COLOR_BGR2RGB), colours)
    if label.ndim != 2:
        hint = "" if colours is not None else " (colour labels need colours in the class file)"
        raise DatasetError(f"{path}: label must be single-channel, got shape {label.shape}{hint}")
    return label


def colours_to_ids(rgb: np.ndarray, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """HxWx3 RGB label colours to HxW uint8 ids; colours not in the list become IGNORE_INDEX."""
    channels = rgb.astype(np.int32)
    packed = (channels[..., 0] << 16) | (channels[..., 1] << 8) | channels[..., 2]
    ids = np.full(rgb.shape[:2], IGNORE_INDEX, dtype=np.uint8)
    for class_id, (red, green, blue) in enumerate(colours):
        ids[packed == (red << 16 | green << 8 | blue)] = class_id
    return ids


def check_same_size(image: np.ndarray, label: np.ndarray, image_path, label_path) -> None:
    if image.shape[:2] != label.shape:
        raise DatasetError(
            f"{label_path}: label is {label.shape[0]}x{label.shape[1]} but image "
            f"{image_path} is {image.shape[0]}x{image.shape[1]}"
        )
