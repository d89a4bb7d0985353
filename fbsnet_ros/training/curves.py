"""The training curve of a run: loss, val mIoU and per-class val IoU over epochs, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CURVE_FILE = "training_curve.png"


def plot_training_curve(history: Sequence[dict], class_names: Sequence[str],
                        path: str | Path, title: str = "") -> Path:
    """Write the curve of `history` (the checkpoints' records) to `path`, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    epochs = [record["epoch"] for record in history]
    validated = [record for record in history if "val_miou" in record]
    figure, (loss_axis, miou_axis, class_axis) = plt.subplots(1, 3, figsize=(16, 4.5))
    loss_axis.plot(epochs, [record["loss"] for record in history], color="tab:blue")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="loss")
    loss_axis.grid(alpha=0.3)
    val_epochs = [record["epoch"] for record in validated]
    mious = [100 * record["val_miou"] for record in validated]
    miou_axis.plot(val_epochs, mious, marker="o", color="tab:green")
    if mious:
        best = max(range(len(mious)), key=mious.__getitem__)
        miou_axis.annotate(f"best {mious[best]:.2f} % (epoch {val_epochs[best]})",
                           (val_epochs[best], mious[best]), textcoords="offset points",
                           xytext=(-60, -18))
    miou_axis.set(xlabel="epoch", ylabel="val mIoU (%)", title="val mIoU")
    miou_axis.grid(alpha=0.3)
    for name in class_names:
        points = [(record["epoch"], 100 * record["val_iou"][name]) for record in validated
                  if record.get("val_iou", {}).get(name) is not None]
        if points:
            class_axis.plot(*zip(*points), marker=".", label=name)
    class_axis.set(xlabel="epoch", ylabel="val IoU (%)", title="per-class val IoU")
    class_axis.grid(alpha=0.3)
    class_axis.legend(fontsize=7, ncol=2, loc="lower right")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=90)
    plt.close(figure)
    temporary.replace(path)
    return path
