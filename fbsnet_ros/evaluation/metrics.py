"""Confusion matrix accumulation and the segmentation metrics computed from it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from fbsnet_ros.data.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Counts (ground truth, prediction) pairs over a whole evaluated set; rows are ground truth."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # Counts stay on the device of the frames (a GPU's, in training): no sync per frame.
        self._counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @property
    def matrix(self) -> torch.Tensor:
        """The counts on the CPU, rows ground truth, columns prediction."""
        return self._counts.cpu()

    def reset(self) -> None:
        self._counts.zero_()

    def update(self, target, prediction) -> None:
        target = torch.as_tensor(target).reshape(-1).to(torch.int64)
        prediction = torch.as_tensor(prediction).reshape(-1).to(torch.int64)
        if target.shape != prediction.shape:
            raise ValueError(f"target has {target.numel()} pixels, prediction {prediction.numel()}")
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        pairs = target[valid] * self.num_classes + prediction[valid].clamp(0, self.num_classes - 1)
        counts = torch.bincount(pairs, minlength=self.num_classes**2)
        if self._counts.device != counts.device:
            self._counts = self._counts.to(counts.device)
        self._counts += counts.view(self.num_classes, self.num_classes)

    def compute(self) -> dict:
        return segmentation_metrics(self.matrix.numpy())


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU per class; NaN where a class is absent from both ground truth and prediction.

    A class present in the ground truth with no true positive scores 0, not NaN.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def pixel_accuracy(matrix: np.ndarray) -> float:
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total > 0 else math.nan


def segmentation_metrics(matrix: np.ndarray) -> dict:
    """Fractions (0-1): mIoU over classes with a defined IoU, per-class IoU, pixel accuracy."""
    ious = per_class_iou(matrix)
    defined = ious[~np.isnan(ious)]
    return {
        "miou": float(defined.mean()) if defined.size else math.nan,
        "per_class_iou": ious,
        "pixel_accuracy": pixel_accuracy(matrix),
    }


def metrics_report(matrix: np.ndarray, class_names: Sequence[str], frames: int) -> dict:
    """The JSON report shared by every command that scores: percentages 0-100, NaN as null."""
    metrics = segmentation_metrics(matrix)

    def percent(value: float) -> float | None:
        return None if math.isnan(value) else round(100.0 * value, 4)

    return {
        "miou": percent(metrics["miou"]),
        "per_class_iou": {
            name: percent(iou) for name, iou in zip(class_names, metrics["per_class_iou"])
        },
        "pixel_accuracy": percent(metrics["pixel_accuracy"]),
        "frames": int(frames),
    }
