"""Scoring a Segmenter on labelled frames, and the plots that go with a report."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from fbsnet_ros.evaluation.metrics import ConfusionMatrix, metrics_report


def score_frames(segmenter, frames: Iterable[tuple[np.ndarray, np.ndarray]],
                 progress=None) -> tuple[ConfusionMatrix, int]:
    """Predict every (RGB, label) pair at the label's full size and accumulate the confusion."""
    confusion = ConfusionMatrix(segmenter.num_classes)
    count = 0
    for image, label in frames:
        confusion.update(label, segmenter.predict(image))
        count += 1
        if progress is not None:
            progress.update(1)
    return confusion, count


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def format_report(report: dict) -> str:
    """A short human summary of a metrics report."""
    lines = [f"mIoU {report['miou']:.2f}%  pixel accuracy {report['pixel_accuracy']:.2f}%  "
             f"({report['frames']} frames)"]
    for name, iou in report["per_class_iou"].items():
        lines.append(f"  {name:<14} {'n/a' if iou is None else f'{iou:6.2f}%'}")
    return "\n".join(lines)


def write_plots(matrix: np.ndarray, class_names: Sequence[str], out_dir: str | Path) -> list[Path]:
    """Normalised confusion matrix and per-class IoU bars as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fbsnet_ros.evaluation.metrics import per_class_iou

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)

    figure, axes = plt.subplots(figsize=(8, 7))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    confusion_path = out_dir / "confusion_matrix.png"
    figure.savefig(confusion_path, dpi=100)
    plt.close(figure)

    ious = per_class_iou(matrix)
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.bar(range(len(class_names)), [0 if math.isnan(v) else 100 * v for v in ious])
    axes.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    axes.set_ylabel("IoU (%)")
    axes.set_ylim(0, 100)
    figure.tight_layout()
    iou_path = out_dir / "per_class_iou.png"
    figure.savefig(iou_path, dpi=100)
    plt.close(figure)
    return [confusion_path, iou_path]


def report_for(confusion: ConfusionMatrix, class_names: Sequence[str], frames: int) -> dict:
    return metrics_report(confusion.matrix.numpy(), class_names, frames)
