"""Scoring a Segmenter on labelled frames, and the plots that go with a report."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from fbsnet_ros.errors import UserError
from fbsnet_ros.evaluation.metrics import (
    ConfusionMatrix,
    metrics_report,
    per_class_iou,
    segmentation_metrics,
)


def score_frames(segmenter, frames: Iterable[tuple[np.ndarray, np.ndarray]],
                 progress=None, confidence_threshold: float = 0.0
                 ) -> tuple[ConfusionMatrix, int]:
    """Predict every (RGB, label) pair at the label's full size and accumulate the confusion.

    With a confidence threshold above 0, pixels below it are predicted as no class (as the
    node publishes them) and count as wrong.
    """
    confusion = ConfusionMatrix(segmenter.num_classes)
    count = 0
    for image, label in frames:
        prediction = segmenter.segment(image, threshold=confidence_threshold).labels
        confusion.update(label, prediction)
        count += 1
        if progress is not None:
            progress.update(1)
    return confusion, count


def write_report(report: dict, path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--report {path}: is a folder; give a file name such as report.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def format_report(report: dict) -> str:
    """A short human summary of a metrics report."""
    lines = [f"mIoU {report['miou']:.2f}%  pixel accuracy {report['pixel_accuracy']:.2f}%  "
             f"({report['frames']} frames)"]
    for name, iou in report["per_class_iou"].items():
        lines.append(f"  {name:<14} {'n/a' if iou is None else f'{iou:6.2f}%'}")
    return "\n".join(lines)


def check_plot_folder(out_dir: str | Path) -> Path:
    """The folder the plots go to: an existing file there is the user's, never replaced."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--plots {out_dir}: exists and is not a folder")
    return out_dir


def plot_title(matrix: np.ndarray, frames: int, title: str = "") -> str:
    """'<title>: mIoU 61.23 % over 101 frames'; classes absent from data and prediction are
    left out of the mean, as in the report."""
    miou = segmentation_metrics(np.asarray(matrix, dtype=np.float64))["miou"]
    score = "no class present" if math.isnan(miou) else f"mIoU {100 * miou:.2f} %"
    frame_count = f"{frames} frame{'' if frames == 1 else 's'}"
    return f"{title}: {score} over {frame_count}" if title else f"{score} over {frame_count}"


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str):
    """The confusion matrix normalised per ground-truth row, each cell's percentage written
    in it; rows of classes absent from the ground truth are marked rather than left blank."""
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    columns = list(class_names)
    size = len(class_names)
    if matrix.shape[1] > size and matrix[:, size:].sum() > 0:
        columns.append("(unlabeled)")  # predicted as no class: below the confidence threshold
    matrix = matrix[:, :len(columns)]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    figure, axes = plt.subplots(figsize=(2 + 0.6 * len(columns), 1.5 + 0.55 * size))
    image = axes.imshow(np.ma.masked_where(np.broadcast_to(rows == 0, matrix.shape), normalised),
                        cmap="Blues", vmin=0, vmax=1)
    axes.set_facecolor("#dddddd")  # absent rows show the background, not "0 %"
    font_size = max(5, min(9, 110 // max(size, 1)))
    for truth in range(size):
        if rows[truth, 0] == 0:
            axes.text(size / 2 - 0.5, truth, "absent from the ground truth", ha="center",
                      va="center", fontsize=font_size, color="#555555")
            continue
        for predicted in range(len(columns)):
            share = normalised[truth, predicted]
            if matrix[truth, predicted] > 0:
                axes.text(predicted, truth, f"{100 * share:.0f}" if share >= 0.005 else "<1",
                          ha="center", va="center", fontsize=font_size,
                          color="white" if share > 0.6 else "black")
    axes.set_xticks(range(len(columns)), columns, rotation=60, ha="right")
    axes.set_yticks(range(size), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    axes.set_title(f"{title}\nconfusion matrix, % of each ground-truth row")
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the ground-truth row")
    figure.tight_layout()
    return figure


def iou_figure(matrix: np.ndarray, class_names: Sequence[str], title: str):
    """Per-class IoU bars with their values; a class absent from ground truth and prediction
    has no bar and says 'absent', unlike a class that scored 0."""
    import matplotlib.pyplot as plt

    ious = per_class_iou(np.asarray(matrix, dtype=np.float64))
    figure, axes = plt.subplots(figsize=(max(6, 0.7 * len(class_names) + 2), 4.5))
    heights = [0 if math.isnan(v) else 100 * v for v in ious]
    axes.bar(range(len(class_names)), heights)
    for index, iou in enumerate(ious):
        label = "absent" if math.isnan(iou) else f"{100 * iou:.1f}"
        axes.text(index, heights[index] + 1, label, ha="center", va="bottom", fontsize=8,
                  rotation=90 if math.isnan(iou) else 0,
                  color="#777777" if math.isnan(iou) else "black")
    axes.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    axes.set_ylabel("IoU (%)")
    axes.set_ylim(0, 110)
    axes.set_title(f"{title}\nper-class IoU")
    figure.tight_layout()
    return figure


def write_plots(matrix: np.ndarray, class_names: Sequence[str], out_dir: str | Path,
                frames: int, title: str = "") -> list[Path]:
    """confusion_matrix.png and per_class_iou.png in `out_dir`, titled with the mIoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = check_plot_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    heading = plot_title(np.asarray(matrix), frames, title)
    paths = []
    for name, draw in (("confusion_matrix.png", confusion_figure),
                       ("per_class_iou.png", iou_figure)):
        figure = draw(matrix, class_names, heading)
        figure.savefig(out_dir / name, dpi=100)
        plt.close(figure)
        paths.append(out_dir / name)
    return paths


def report_for(confusion: ConfusionMatrix, class_names: Sequence[str], frames: int) -> dict:
    return metrics_report(confusion.matrix.numpy(), class_names, frames)
