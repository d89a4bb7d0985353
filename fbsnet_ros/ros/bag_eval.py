"""bag-eval: segment every camera frame of a bag, score it, and write the labels back as a bag.

Offline and deterministic: every frame is run, in bag order, through the same Segmenter and
image conversion as the node (no frame dropping). Ground truth is matched to frames by header
stamp, from a mono8 label topic in the same bag or from a folder of <stamp_ns>.png files. The
metrics are those of `fbsnet-ros evaluate` (same confusion matrix, same report keys), plus
counts of what was read, skipped and scored, and the inference latency.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from fbsnet_ros.data.classes import IGNORE_INDEX
from fbsnet_ros.data.io import DatasetError, read_label
from fbsnet_ros.evaluation.metrics import ConfusionMatrix
from fbsnet_ros.evaluation.scoring import format_report, report_for
from fbsnet_ros.inference import colorize, overlay
from fbsnet_ros.ros.bag_tools import (
    CAMERA_MESSAGE_TYPES,
    IMAGE_TYPE,
    BagError,
    BagWriter,
    CameraFrame,
    bag_messages,
    decode_camera_frame,
    deserialize,
    open_bag,
    storage_of,
    topic_connections,
    topic_message_count,
)
from fbsnet_ros.ros.image_conversion import (
    ImageConversionError,
    image_msg_to_rgb,
    labels_to_mono8_fields,
    output_encoding_for,
    rgb_to_image_fields,
)
from fbsnet_ros.ros.names import LABELS_TOPIC, OVERLAY_TOPIC
from fbsnet_ros.ros.stamps import stamp_to_ns

# Frames (and label messages) waiting for their partner on a ground-truth topic. Recorders log
# a frame and its label close together; anything further apart than this counts as unmatched,
# which keeps memory bounded on long drives.
MATCH_WINDOW_FRAMES = 300
LATENCY_PERCENTILES = (50, 90, 99)


def check_bag(bag: str | Path, image_topic: str, gt_topic: str | None = None,
              out_bag: str | Path | None = None) -> str:
    """Fail fast (BagError) on a bag or topic bag-eval cannot use; returns the image type."""
    if out_bag is not None and Path(out_bag).exists():
        raise BagError(f"{out_bag}: already exists; bags are never overwritten")
    with open_bag(bag) as reader:
        connections = topic_connections(reader, bag, image_topic, CAMERA_MESSAGE_TYPES)
        if gt_topic is not None:
            topic_connections(reader, bag, gt_topic, (IMAGE_TYPE,))
    return connections[0].msgtype


class FrameScorer:
    """The confusion matrix of a bag, fed label maps checked against their frames."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_INDEX) -> None:
        self.confusion = ConfusionMatrix(num_classes)
        # As SegmentationDataset does for `evaluate`: ids past the class list are ignored, and
        # so is the dataset's own "unlabelled" id when it is one of the classes' numbers.
        self.lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        self.lookup[:num_classes] = np.arange(num_classes, dtype=np.uint8)
        if 0 <= ignore_label < 256:
            self.lookup[ignore_label] = IGNORE_INDEX
        self.scored = 0
        self.rejected: Counter[str] = Counter()

    def score(self, prediction: np.ndarray, truth: np.ndarray | None, problem: str | None) -> None:
        if truth is not None and truth.shape != prediction.shape:
            problem = (f"ground truth {truth.shape[0]}x{truth.shape[1]} does not match the "
                       f"frame's {prediction.shape[0]}x{prediction.shape[1]}")
        if problem is not None:
            self.rejected[problem] += 1
            return
        self.confusion.update(self.lookup[truth], prediction)
        self.scored += 1


def label_message_to_truth(message) -> tuple[np.ndarray | None, str | None]:
    """A mono8 label Image as HxW class ids, or the reason it cannot be used."""
    if message.encoding != "mono8":
        return None, f"ground truth encoding '{message.encoding}' is not mono8"
    try:
        # mono8 converts to grey RGB, each channel the class id: the node's validation, reused.
        return image_msg_to_rgb(message)[:, :, 0], None
    except ImageConversionError as error:
        return None, f"ground truth: {error}"


def folder_truth(gt_dir: Path, stamp_ns: int) -> tuple[np.ndarray | None, str | None] | None:
    """<gt_dir>/<stamp_ns>.png, None when the frame has no such file."""
    path = gt_dir / f"{stamp_ns}.png"
    if not path.is_file():
        return None
    try:
        return read_label(path), None
    except DatasetError as error:
        return None, str(error)


class StampMatcher:
    """Pairs predictions with label messages of the same header stamp, whichever comes first."""

    def __init__(self, scorer: FrameScorer) -> None:
        self.scorer = scorer
        self.predictions: OrderedDict[int, np.ndarray] = OrderedDict()
        self.truths: OrderedDict[int, object] = OrderedDict()
        self.without_truth = 0
        self.unmatched_truths = 0

    def add_prediction(self, stamp_ns: int, prediction: np.ndarray) -> None:
        if stamp_ns in self.truths:
            self.scorer.score(prediction, *label_message_to_truth(self.truths.pop(stamp_ns)))
            return
        self.predictions[stamp_ns] = prediction
        if len(self.predictions) > MATCH_WINDOW_FRAMES:
            self.predictions.popitem(last=False)
            self.without_truth += 1

    def add_truth(self, stamp_ns: int, message) -> None:
        if stamp_ns in self.predictions:
            self.scorer.score(self.predictions.pop(stamp_ns), *label_message_to_truth(message))
            return
        self.truths[stamp_ns] = message
        if len(self.truths) > MATCH_WINDOW_FRAMES:
            self.truths.popitem(last=False)
            self.unmatched_truths += 1

    def finish(self) -> None:
        self.without_truth += len(self.predictions)
        self.unmatched_truths += len(self.truths)
        self.predictions.clear()
        self.truths.clear()


class BagEvaluation:
    """The state of one bag-eval run: frames are fed in bag order, the report comes out."""

    def __init__(self, segmenter, *, gt_topic: str | None, gt_folder: Path | None,
                 ignore_label: int, overlay_alpha: float | None) -> None:
        self.segmenter = segmenter
        self.gt_topic = gt_topic
        self.gt_folder = gt_folder
        self.overlay_alpha = overlay_alpha
        self.scorer = FrameScorer(segmenter.num_classes, ignore_label)
        self.matcher = StampMatcher(self.scorer)
        self.frames_read = 0
        self.without_truth = 0
        self.skipped: list[dict] = []
        self.latencies_ms: list[float] = []

    def add_truth_message(self, message_type: str, raw) -> None:
        try:
            message = deserialize(raw, message_type)
        except ValueError as error:
            self.scorer.rejected[f"ground truth: {error}"] += 1
            return
        self.matcher.add_truth(stamp_to_ns(message.header.stamp), message)

    def add_frame(self, frame: CameraFrame, writer: BagWriter | None) -> None:
        self.frames_read += 1
        if frame.error is not None:
            self.skipped.append({"index": frame.index, "stamp_ns": frame.stamp_ns,
                                 "reason": frame.error})
            return
        started = time.perf_counter()
        prediction = self.segmenter.predict(frame.rgb)
        self.latencies_ms.append(1000.0 * (time.perf_counter() - started))
        if writer is not None:
            self._write_outputs(writer, frame, prediction)
        if self.gt_topic is not None:
            self.matcher.add_prediction(frame.stamp_ns, prediction)
        elif self.gt_folder is not None and (found := folder_truth(self.gt_folder,
                                                                   frame.stamp_ns)):
            self.scorer.score(prediction, *found)
        else:
            self.without_truth += 1

    def _write_outputs(self, writer: BagWriter, frame: CameraFrame,
                       prediction: np.ndarray) -> None:
        # The source frame's header and log time, so outputs line up with it in any bag tool.
        writer.write_image(LABELS_TOPIC, frame.header, labels_to_mono8_fields(prediction),
                           frame.log_ns)
        if self.overlay_alpha is not None:
            mask = colorize(prediction, self.segmenter.palette)
            blended = overlay(frame.rgb, mask, self.overlay_alpha)
            fields = rgb_to_image_fields(blended, output_encoding_for(frame.encoding))
            writer.write_image(OVERLAY_TOPIC, frame.header, fields, frame.log_ns)

    def report(self) -> dict:
        """Counts, the `evaluate` metrics and latency; call once every frame is in."""
        self.matcher.finish()
        ground_truth = (f"topic {self.gt_topic}" if self.gt_topic is not None
                        else f"folder {self.gt_folder}" if self.gt_folder is not None else None)
        return {
            "ground_truth": ground_truth,
            "frames_read": self.frames_read,
            "frames_segmented": len(self.latencies_ms),
            "frames_skipped": dict(Counter(entry["reason"] for entry in self.skipped)),
            "frames_scored": self.scorer.scored,
            "frames_without_ground_truth": self.without_truth + self.matcher.without_truth,
            "ground_truth_rejected": dict(self.scorer.rejected),
            "ground_truth_unmatched": self.matcher.unmatched_truths,
            **report_for(self.scorer.confusion, self.segmenter.class_names, self.scorer.scored),
            **latency_summary(self.latencies_ms),
            "device": str(self.segmenter.device),
            "backend": self.segmenter.backend_name,
            "input_size": list(self.segmenter.input_size),
            "skipped": self.skipped,
        }


def evaluate_bag(segmenter, bag: str | Path, image_topic: str, *, gt_topic: str | None = None,
                 gt_dir: str | Path | None = None, ignore_label: int = IGNORE_INDEX,
                 out_bag: str | Path | None = None, out_storage: str | None = None,
                 overlay_alpha: float | None = None, progress=None) -> tuple[dict, np.ndarray]:
    """Segment, score and (with out_bag) write back every frame; returns (report, confusion)."""
    if gt_topic is not None and gt_dir is not None:
        raise ValueError("give ground truth as a topic or a folder, not both")
    if gt_topic is not None and gt_topic == image_topic:
        raise ValueError(f"the ground-truth topic cannot be the image topic {image_topic}")
    gt_folder = Path(gt_dir) if gt_dir is not None else None
    if gt_folder is not None and not gt_folder.is_dir():
        raise DatasetError(f"{gt_folder}: ground-truth folder missing")
    evaluation = BagEvaluation(segmenter, gt_topic=gt_topic, gt_folder=gt_folder,
                               ignore_label=ignore_label, overlay_alpha=overlay_alpha)
    with open_bag(bag) as reader:
        camera = topic_connections(reader, bag, image_topic, CAMERA_MESSAGE_TYPES)
        truth = topic_connections(reader, bag, gt_topic, (IMAGE_TYPE,)) if gt_topic else []
        if progress is not None:
            progress.reset(total=topic_message_count(reader, image_topic))
        output = (BagWriter(out_bag, out_storage or storage_of(bag)) if out_bag is not None
                  else nullcontext())
        with output as writer:
            for connection, log_ns, raw in bag_messages(reader, bag, camera + truth):
                if connection.topic == gt_topic:
                    evaluation.add_truth_message(connection.msgtype, raw)
                    continue
                index = evaluation.frames_read
                evaluation.add_frame(
                    decode_camera_frame(index, connection.msgtype, log_ns, raw), writer)
                if progress is not None:
                    progress.update(1)
    report = {"bag": str(bag), "image_topic": image_topic, "message_type": camera[0].msgtype,
              **evaluation.report(), "out_bag": str(out_bag) if out_bag is not None else None}
    return report, evaluation.scorer.confusion.matrix.numpy()


def nothing_done(report: dict) -> str | None:
    """Why a finished bag-eval did not do what it was asked (exit status 1), or None."""
    if report["frames_segmented"] == 0:
        return (f"no frame of {report['image_topic']} could be segmented "
                f"({report['frames_read']} read)")
    if report["ground_truth"] is not None and report["frames_scored"] == 0:
        return (f"no frame was scored: none of the {report['frames_segmented']} segmented "
                f"frames had usable ground truth in {report['ground_truth']}")
    return None


def latency_summary(latencies_ms: list[float]) -> dict:
    """Inference time per frame (predict only) and the frame rate it allows."""
    if not latencies_ms:
        return {"latency_ms": None, "fps": None}
    percentiles = np.percentile(latencies_ms, LATENCY_PERCENTILES)
    summary = {f"p{p}": round(float(v), 3) for p, v in zip(LATENCY_PERCENTILES, percentiles)}
    summary["mean"] = round(float(np.mean(latencies_ms)), 3)
    return {"latency_ms": summary, "fps": round(1000.0 / float(np.mean(latencies_ms)), 2)}


def format_bag_report(report: dict) -> str:
    """The human summary bag-eval prints."""
    counts = (f"{report['frames_read']} frames read, {report['frames_segmented']} segmented, "
              f"{sum(report['frames_skipped'].values())} skipped, "
              f"{report['frames_scored']} scored, "
              f"{report['frames_without_ground_truth']} without ground truth")
    lines = [f"{report['bag']} {report['image_topic']} ({report['message_type']}): {counts}"]
    for reason, count in report["frames_skipped"].items():
        lines.append(f"  skipped {count}: {reason}")
    for reason, count in report["ground_truth_rejected"].items():
        lines.append(f"  not scored {count}: {reason}")
    if report["latency_ms"] is not None:
        latency = report["latency_ms"]
        lines.append(f"inference ({report['backend']} on {report['device']}): "
                     f"p50 {latency['p50']:.1f} ms, "
                     f"p90 {latency['p90']:.1f} ms, p99 {latency['p99']:.1f} ms, "
                     f"{report['fps']:.1f} FPS")
    if report["frames_scored"]:
        lines.append(format_report(report))
    if report["out_bag"]:
        lines.append(f"wrote {report['out_bag']}")
    return "\n".join(lines)
