"""Confusion matrix and metrics against matrices worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fbsnet_ros.data.classes import IGNORE_INDEX, UNLABELED
from fbsnet_ros.evaluation.metrics import (
    ConfusionMatrix,
    metrics_report,
    per_class_iou,
    pixel_accuracy,
    segmentation_metrics,
)

# Five classes. Class 2 is in the ground truth but never predicted (IoU 0); class 3 appears in
# neither (IoU NaN, left out of the mean) except under ignored pixels; class 4 is predicted once
# but absent from the ground truth (IoU 0).
TARGET = np.array([[0, 0, 0, 1, 1],
                   [2, 2, IGNORE_INDEX, IGNORE_INDEX, 0]])
PREDICTION = np.array([[0, 0, 1, 1, 0],
                       [0, 0, 3, 1, 4]])
# Rows ground truth, columns prediction; the two ignored pixels are not counted.
EXPECTED_MATRIX = np.array([
    [2, 1, 0, 0, 1],
    [1, 1, 0, 0, 0],
    [2, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
])
# IoU = TP / (row sum + column sum - TP).
EXPECTED_IOU = [2 / (4 + 5 - 2), 1 / (2 + 2 - 1), 0.0, math.nan, 0.0]
EXPECTED_MIOU = (2 / 7 + 1 / 3 + 0.0 + 0.0) / 4
EXPECTED_PIXEL_ACCURACY = 3 / 8


def with_no_class_column(matrix: np.ndarray, no_class=(0, 0, 0, 0, 0)) -> np.ndarray:
    """ConfusionMatrix's layout: the class columns, then the pixels predicted as no class."""
    return np.column_stack([matrix, no_class])


def test_confusion_matrix_counts_pairs_and_skips_ignored_pixels():
    confusion = ConfusionMatrix(5)
    confusion.update(TARGET, PREDICTION)
    np.testing.assert_array_equal(confusion.matrix.numpy(), with_no_class_column(EXPECTED_MATRIX))
    assert int(confusion.matrix.sum()) == 8  # 10 pixels, 2 ignored


def test_unlabeled_predictions_count_as_wrong():
    # The node's confidence threshold marks pixels 255: they are false negatives of their
    # ground-truth class, never a hit for any class (the last class was once credited).
    target = np.array([0, 0, 4, 4, 4, 1])
    prediction = np.array([0, UNLABELED, 4, UNLABELED, 7, 1])  # 7: past the classes, no class
    confusion = ConfusionMatrix(5)
    confusion.update(target, prediction)
    expected = np.zeros((5, 6), np.int64)
    expected[0, 0] = expected[4, 4] = expected[1, 1] = 1
    expected[0, 5], expected[4, 5] = 1, 2
    np.testing.assert_array_equal(confusion.matrix.numpy(), expected)
    metrics = confusion.compute()
    np.testing.assert_allclose(metrics["per_class_iou"], [0.5, 1.0, math.nan, math.nan, 1 / 3],
                               equal_nan=True)
    assert metrics["pixel_accuracy"] == pytest.approx(3 / 6)
    # Dropping the no-class column would score it higher: the column is what makes it wrong.
    assert segmentation_metrics(expected[:, :5])["pixel_accuracy"] == 1.0


def test_confusion_matrix_accumulates_tensors_and_resets():
    confusion = ConfusionMatrix(5)
    confusion.update(torch.from_numpy(TARGET), torch.from_numpy(PREDICTION))
    confusion.update(TARGET.ravel(), PREDICTION.ravel())
    np.testing.assert_array_equal(confusion.matrix.numpy(),
                                  2 * with_no_class_column(EXPECTED_MATRIX))
    confusion.reset()
    assert int(confusion.matrix.sum()) == 0


def test_confusion_matrix_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="10 pixels, prediction 9"):
        ConfusionMatrix(5).update(TARGET, PREDICTION.ravel()[:9])


def test_per_class_iou_zero_for_missed_class_nan_for_absent_class():
    iou = per_class_iou(EXPECTED_MATRIX)
    np.testing.assert_allclose(iou, EXPECTED_IOU, equal_nan=True)
    assert iou[2] == 0.0 and iou[4] == 0.0
    assert math.isnan(iou[3])


def test_segmentation_metrics_leave_absent_class_out_of_the_mean():
    confusion = ConfusionMatrix(5)
    confusion.update(TARGET, PREDICTION)
    metrics = confusion.compute()
    assert metrics["miou"] == pytest.approx(EXPECTED_MIOU)
    assert metrics["pixel_accuracy"] == pytest.approx(EXPECTED_PIXEL_ACCURACY)
    np.testing.assert_allclose(metrics["per_class_iou"], EXPECTED_IOU, equal_nan=True)


def test_perfect_prediction_scores_one_and_empty_matrix_scores_nan():
    confusion = ConfusionMatrix(3)
    labels = np.array([0, 1, 1, 2, IGNORE_INDEX])
    confusion.update(labels, np.where(labels == IGNORE_INDEX, 0, labels))
    assert confusion.compute()["miou"] == 1.0
    assert pixel_accuracy(confusion.matrix.numpy()) == 1.0
    empty = segmentation_metrics(np.zeros((3, 3)))
    assert math.isnan(empty["miou"]) and math.isnan(empty["pixel_accuracy"])


def test_metrics_report_in_percent_with_null_for_nan():
    names = ["road", "car", "sky", "train", "boat"]
    report = metrics_report(EXPECTED_MATRIX, names, frames=3)
    assert set(report) == {"miou", "per_class_iou", "pixel_accuracy", "frames"}
    assert report["miou"] == pytest.approx(100 * EXPECTED_MIOU, abs=1e-4)
    assert report["pixel_accuracy"] == pytest.approx(37.5)
    assert report["per_class_iou"] == {
        "road": pytest.approx(100 * 2 / 7, abs=1e-4),
        "car": pytest.approx(100 / 3, abs=1e-4),
        "sky": 0.0,
        "train": None,
        "boat": 0.0,
    }
    assert list(report["per_class_iou"]) == names
    assert report["frames"] == 3
    # Strict JSON: NaN must already be null.
    assert json.loads(json.dumps(report, allow_nan=False)) == report
