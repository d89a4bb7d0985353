"""Confusion matrix accumulation and the segmentation metrics computed from it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from fbsnet_ros.data.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Counts (ground truth, prediction) pairs over a whole evaluated set; rows are ground truth.

    K classes make a K x (K + 1) matrix: the last column counts pixels predicted as no class
    (UNLABELED, below a confidence threshold, or any id past the classes), which every metric
    counts as wrong.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # Counts stay on the device of the frames (a GPU's, in training): no sync per frame.
        self._counts = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64)

    @property
    def matrix(self) -> torch.Tensor:
        """The counts on the CPU, rows ground truth, columns prediction (the last: no class)."""
        return self._counts.cpu()

    def reset(self) -> None:
        self._counts.zero_()

    def update(self, target, prediction) -> None:
        target = torch.as_tensor(target).reshape(-1).to(torch.int64)
        prediction = torch.as_tensor(prediction).reshape(-1).to(torch.int64)
        if target.shape != prediction.shape:
            raise ValueError(f"target has {target.numel()} pixels, prediction {prediction.numel()}")
        classes = self.num_classes
        valid = (target != self.ignore_index) & (target >= 0) & (target < classes)
        prediction = prediction[valid]
        no_class = (prediction < 0) | (prediction >= classes)
        prediction = prediction.masked_fill(no_class, classes)
        pairs = target[valid] * (classes + 1) + prediction
        counts = torch.bincount(pairs, minlength=classes * (classes + 1))
        if self._counts.device != counts.device:
            self._counts = self._counts.to(counts.device)
        self._counts += counts.view(classes, classes + 1)

    def compute(self) -> dict:
        return segmentation_metrics(self.matrix.numpy())


def class_columns(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A K x K or K x (K + 1) confusion matrix (ConfusionMatrix.matrix) as its K x K class
    columns and its ground-truth row totals (which include the pixels predicted as no class)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    classes = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] not in (classes, classes + 1):
        raise ValueError(f"a confusion matrix is K x K or K x (K + 1), got {matrix.shape}")
    return matrix[:, :classes], matrix.sum(axis=1)


def per_class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU per class; NaN where a class is absent from both ground truth and prediction.

    A class present in the ground truth with no true positive scores 0, not NaN; a pixel
    predicted as no class is a false negative of its ground-truth class.
    """
    classes, rows = class_columns(matrix)
    true_positive = np.diag(classes)
    union = classes.sum(axis=0) + rows - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def pixel_accuracy(matrix: np.ndarray) -> float:
    classes, rows = class_columns(matrix)
    total = rows.sum()
    return float(np.trace(classes) / total) if total > 0 else math.nan


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
