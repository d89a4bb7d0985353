"""The segmentation node's ROS-free core, shared by the plain and the managed (lifecycle) node.

Frame intake into a mailbox with one slot per camera, a worker thread that converts and
segments, a publishing thread that hands the results to the ROS side meanwhile, the model's
life (load, release), and the statistics and health rules behind ``/diagnostics`` (one set per
camera). Nothing here imports rclpy:
messages arrive as plain objects with the sensor_msgs fields, and what to publish is the
caller's business.

Only the latest frame of each camera is ever processed: the subscription callbacks drop each
message into its camera's slot and the worker takes every waiting frame at once, so a slow
model skips frames instead of building a backlog, latency stays bounded whatever the camera
rate, and no camera starves another. The waiting frames of several cameras go through the
network together where the backend can (one batch, or parallel OpenVINO streams).

Results are published on a thread of their own, in order, while the worker already converts and
segments the next frames: the per-frame work around the network (label, colour and overlay
images, their messages, statistics) overlaps the next inference instead of adding to it. The
worker takes the next frames only once the publishing thread has taken the last result, so a
slow publisher holds the worker back and the frames segmented are still the latest.
"""

from __future__ import annotations

import ctypes
import enum
import gc
import math
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from fbsnet_ros.inference import CheckpointError, Segmenter
from fbsnet_ros.inference.backends import BackendUnavailable
from fbsnet_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    output_encoding_for,
)

# FPS and "errors recently" look this far back.
STATISTICS_WINDOW_S = 5.0
# Input older than this, after input has been seen, means the camera has stalled.
STALE_INPUT_S = 2.0
# This many consecutive unusable frames is an error, not a warning: nothing is being served.
FAILED_STREAK_FOR_ERROR = 10
# Timings kept for the latency percentiles and the frame rate.
RECENT_SAMPLES = 200
# A frame still in inference (or a result still being published) when serving stops gets this
# long before the daemon thread is abandoned.
WORKER_JOIN_TIMEOUT_S = 2.0
# What to do about frames lost between a camera and a best-effort reader.
LOST_FRAMES_FIX = (
    "large frames from a best-effort publisher need config/fastdds_large_frames.xml in the "
    "publisher's process (FASTDDS_DEFAULT_PROFILES_FILE; README, 'Large frames'), or a "
    "reliable publisher")
# The settings a Segmenter is built from; the managed node re-reads them at each configure.
SEGMENTER_SETTINGS = ("weights", "device", "input_size", "upsample", "backend",
                      "inference_threads")
# The node's own threads, by the names `top -H` and /proc/PID/task/*/comm show (Linux keeps 15
# characters); bench/node_overhead.py reports the node's CPU by them.
WORKER_THREAD = "fbsnet-worker"
RESULTS_THREAD = "fbsnet-results"
INTAKE_THREAD = "fbsnet-intake"
_PR_SET_NAME = 15  # linux/prctl.h


def named_thread(name: str, target: Callable, *args) -> threading.Thread:
    """A daemon thread (never holding the process open at exit) named `name` in Python and,
    on Linux, in the OS too. Not started."""

    def run() -> None:
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
            except (OSError, AttributeError):
                pass  # a libc without prctl: the Python name still holds
        target(*args)

    return threading.Thread(target=run, name=name, daemon=True)


class ConfigurationError(Exception):
    """A setting the model cannot be built with; the message names the parameter or file."""


class HealthLevel(enum.IntEnum):
    """diagnostic_msgs' levels, without importing it."""

    OK = 0
    WARN = 1
    ERROR = 2


class HealthReport(NamedTuple):
    level: HealthLevel
    message: str
    values: dict[str, str]


class ReceivedFrame(NamedTuple):
    message: object  # sensor_msgs Image or CompressedImage
    received_at: float  # time.monotonic() when the message reached the node


class SegmentedFrame(NamedTuple):
    """One frame's result, for the ROS side to publish."""

    message: object  # the input message (its header goes on every output)
    image: np.ndarray  # HxWx3 RGB, as the network saw it at camera resolution
    labels: np.ndarray  # HxW uint8 class ids (255: below the confidence threshold)
    confidence: np.ndarray | None  # HxW uint8, 255 x top probability, when computed
    overlay_encoding: str  # the encoding the overlay keeps (the camera's channel order)


class LatestFrameMailbox:
    """One slot per camera, shared by the subscriptions and the worker: a new frame replaces
    the one its camera has waiting; the worker takes every waiting frame at once."""

    def __init__(self, cameras: int = 1) -> None:
        self._condition = threading.Condition()
        self._frames: list[ReceivedFrame | None] = [None] * cameras
        self._closed = False

    def put(self, frame: ReceivedFrame, camera: int = 0) -> bool:
        """Store the frame; True when it replaced one the worker had not taken yet."""
        with self._condition:
            replaced = self._frames[camera] is not None
            self._frames[camera] = frame
            self._condition.notify()
        return replaced

    def take(self) -> list[tuple[int, ReceivedFrame]] | None:
        """Wait for frames; every camera's waiting frame as (camera, frame), in camera order;
        None once the mailbox is closed."""
        with self._condition:
            while not any(self._frames) and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            waiting = [(camera, frame) for camera, frame in enumerate(self._frames)
                       if frame is not None]
            self._frames = [None] * len(self._frames)
            return waiting

    def wait_closed(self, seconds: float) -> bool:
        """Sleep up to `seconds` unless the mailbox closes; True when it has closed."""
        with self._condition:
            if seconds > 0 and not self._closed:
                self._condition.wait_for(lambda: self._closed, timeout=seconds)
            return self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class ResultHandoff:
    """The worker's segmented frames passing to the publishing thread, one at a time."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item = None
        self._closed = False

    def give(self, item) -> bool:
        """Hand `item` over and wait until the publishing thread has taken it; False when
        serving stopped first (the item is dropped)."""
        with self._condition:
            self._item = item
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._item is None or self._closed)
            return self._item is None

    def take(self):
        """Wait for the next item; None once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed)
            if self._closed:
                return None
            item, self._item = self._item, None
            self._condition.notify_all()
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class FrameStatistics:
    """Counters and recent timings behind the diagnostics, shared by the node's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.rejected = self.failed = 0
        self.last_error = ""
        # Transport: frames the middleware reports lost before reaching the node, publishers
        # and subscribers whose QoS cannot match the node's, and the input QoS in use.
        self.lost = self.incompatible_input = self.incompatible_outputs = 0
        self.input_reliability = ""
        self.reliability_switches = 0
        self.input_publishers = 0
        self._publishers_since: float | None = None
        self._lost_at: float | None = None
        self._last_received_at: float | None = None
        self._latencies_ms: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._processed_at: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._error_at: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._recent_outcomes: deque[bool] = deque(maxlen=FAILED_STREAK_FOR_ERROR)

    def record_received(self, now: float, replaced_waiting_frame: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += replaced_waiting_frame
            self._last_received_at = now

    def record_replaced(self, count: int) -> None:
        """Frames a newer one replaced in the subscription's one-deep history (reliable input
        that came faster than the node took it): dropped by design, not lost."""
        with self._lock:
            self.dropped += count

    def record_lost(self, count: int, now: float) -> None:
        with self._lock:
            self.lost += count
            self._lost_at = now

    def record_incompatible(self, count: int, *, input_side: bool) -> None:
        with self._lock:
            if input_side:
                self.incompatible_input += count
            else:
                self.incompatible_outputs += count

    def record_input_reliability(self, reliability: str, switched: bool) -> None:
        with self._lock:
            self.input_reliability = reliability
            self.reliability_switches += switched

    def record_publishers(self, count: int, now: float) -> None:
        with self._lock:
            if count and not self.input_publishers:
                self._publishers_since = now
            self.input_publishers = count

    def record_processed(self, frame: ReceivedFrame, now: float) -> None:
        with self._lock:
            self.processed += 1
            self._latencies_ms.append(1000.0 * (now - frame.received_at))
            self._processed_at.append(now)
            self._recent_outcomes.append(True)

    def record_rejected(self, reason: str, now: float) -> None:
        with self._lock:
            self.rejected += 1
            self._record_error(reason, now)

    def record_failed(self, reason: str, now: float) -> None:
        with self._lock:
            self.failed += 1
            self._record_error(reason, now)

    def _record_error(self, reason: str, now: float) -> None:
        self.last_error = reason
        self._error_at.append(now)
        self._recent_outcomes.append(False)

    def report(self, now: float) -> HealthReport:
        """Health level, a one-line message and every counter, as strings."""
        with self._lock:
            recent_fps = self._recent_fps(now)
            level, message = self._health(now)
            if self._latencies_ms:
                p50, p90, p99 = np.percentile(self._latencies_ms, (50, 90, 99))
            else:
                p50 = p90 = p99 = math.nan
            values = {
                "frames received": self.received,
                "frames processed": self.processed,
                "frames dropped": self.dropped,
                "frames rejected": self.rejected,
                "frames failed": self.failed,
                "fps": f"{recent_fps:.2f}",
                "latency p50 ms": f"{p50:.1f}",
                "latency p90 ms": f"{p90:.1f}",
                "latency p99 ms": f"{p99:.1f}",
                "last error": self.last_error,
                "frames lost in transport": self.lost,
                "incompatible QoS input": self.incompatible_input,
                "incompatible QoS outputs": self.incompatible_outputs,
                "input publishers": self.input_publishers,
                "input reliability": self.input_reliability,
                "input reliability switches": self.reliability_switches,
            }
        return HealthReport(level, message, {key: str(value) for key, value in values.items()})

    def _recent_fps(self, now: float) -> float:
        recent = [stamp for stamp in self._processed_at if now - stamp <= STATISTICS_WINDOW_S]
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _health(self, now: float) -> tuple[HealthLevel, str]:
        outcomes = self._recent_outcomes
        if len(outcomes) == outcomes.maxlen and not any(outcomes):
            return HealthLevel.ERROR, f"the last {len(outcomes)} frames all failed"
        if self._lost_at is not None and now - self._lost_at <= STATISTICS_WINDOW_S:
            return HealthLevel.WARN, (
                f"frames lost in transport ({self.lost} so far): {LOST_FRAMES_FIX}")
        if self.input_publishers and self._publishers_since is not None:
            waiting_since = max(self._publishers_since, self._last_received_at or -math.inf)
            if now - waiting_since > STALE_INPUT_S:
                return HealthLevel.WARN, (
                    f"{self.input_publishers} publisher(s) on the input but no frame for "
                    f"{now - waiting_since:.1f} s: incompatible QoS, or {LOST_FRAMES_FIX}")
        if self._last_received_at is not None and now - self._last_received_at > STALE_INPUT_S:
            return HealthLevel.WARN, f"no input for {now - self._last_received_at:.1f} s"
        if self._error_at and now - self._error_at[-1] <= STATISTICS_WINDOW_S:
            return HealthLevel.WARN, f"unusable frames in the last {STATISTICS_WINDOW_S:g} s"
        if self._last_received_at is None:
            return HealthLevel.OK, "waiting for images"
        return HealthLevel.OK, "segmenting"


def load_segmenter(settings: dict) -> Segmenter:
    """The Segmenter the settings describe; ConfigurationError with one line otherwise."""
    try:
        return Segmenter.from_checkpoint(
            settings["weights"] or None, device=settings["device"],
            input_size=list(settings["input_size"] or ()) or None,
            upsample=settings["upsample"], backend=settings["backend"],
            threads=settings.get("inference_threads") or 0)
    except CheckpointError as error:
        raise ConfigurationError(f"parameter 'weights': {error}") from None
    except BackendUnavailable as error:
        raise ConfigurationError(f"parameter 'backend': {error}") from None
    except ValueError as error:
        raise ConfigurationError(f"invalid parameter: {error}") from None


class CameraFrame(NamedTuple):
    """A received frame decoded for the network, with its camera."""

    camera: int
    frame: ReceivedFrame
    image: np.ndarray
    overlay_encoding: str


class _Results(NamedTuple):
    """What the worker hands the publishing thread: frames segmented together."""

    decoded: list[CameraFrame]
    results: list


class SegmentationCore:
    """The model, the mailbox and the worker: what both node classes serve frames with.

    `publish(camera, result)` runs on the publishing thread for every segmented frame, in the
    order the frames were segmented;
    `on_rejected(camera, reason)` and `on_failed(reason, details)` are told about unusable
    frames and errors (to log them); `shutting_down()` says whether an error is only the process
    going away; `wants_confidence(camera)` whether anyone would see that camera's confidence
    (it is computed only then, or for a threshold). `confidence_threshold` (0-1) and
    `max_rate_hz` (0: unbounded) may change while serving.
    """

    def __init__(self, *, input_transport: str, max_pixels: int,
                 publish: Callable[[int, SegmentedFrame], None],
                 on_rejected: Callable[[int, str], None], on_failed: Callable[[str, str], None],
                 shutting_down: Callable[[], bool], cameras: int = 1,
                 wants_confidence: Callable[[int], bool] = lambda camera: False,
                 confidence_threshold: float = 0.0, max_rate_hz: float = 0.0) -> None:
        self.input_transport = input_transport
        self.max_pixels = max_pixels
        self.cameras = cameras
        self.statistics = [FrameStatistics() for _ in range(cameras)]
        self.segmenter: Segmenter | None = None
        self.confidence_threshold = confidence_threshold
        self.max_rate_hz = max_rate_hz
        self._publish = publish
        self._on_rejected = on_rejected
        self._on_failed = on_failed
        self._shutting_down = shutting_down
        self._wants_confidence = wants_confidence
        self._mailbox: LatestFrameMailbox | None = None
        self._worker: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._results: ResultHandoff | None = None

    @property
    def loaded(self) -> bool:
        return self.segmenter is not None

    @property
    def serving(self) -> bool:
        return self._worker is not None

    def load(self, settings: dict) -> Segmenter:
        """Build the model (ConfigurationError with one line when the settings cannot)."""
        self.segmenter = load_segmenter(settings)
        return self.segmenter

    def release(self) -> None:
        """Stop serving and free the model, including the CUDA memory it held."""
        self.stop()
        on_cuda = self.segmenter is not None and str(self.segmenter.device).startswith("cuda")
        self.segmenter = None
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()

    def start(self) -> None:
        """Serve frames from now on (the model must be loaded)."""
        if self.segmenter is None:
            raise RuntimeError("start() before load()")
        if self._worker is not None:
            return
        self._mailbox = LatestFrameMailbox(self.cameras)
        self._results = ResultHandoff()
        # Daemons, so a frame stuck in inference or publishing can never hold the process open
        # at exit.
        self._worker = named_thread(WORKER_THREAD, self._serve_frames, self._mailbox,
                                    self._results)
        self._publisher = named_thread(RESULTS_THREAD, self._publish_results, self._mailbox,
                                       self._results)
        self._publisher.start()
        self._worker.start()

    def stop(self) -> None:
        """Stop serving: frames are no longer taken in; the model stays loaded."""
        if self._worker is None:
            return
        self._mailbox.close()
        self._results.close()
        deadline = time.monotonic() + WORKER_JOIN_TIMEOUT_S
        self._worker.join(timeout=WORKER_JOIN_TIMEOUT_S)
        self._publisher.join(timeout=max(0.0, deadline - time.monotonic()))
        self._worker = self._publisher = self._mailbox = self._results = None

    def intake(self, message, camera: int = 0) -> None:
        """A camera message arrived: keep it as that camera's next frame (ignored while not
        serving)."""
        mailbox = self._mailbox
        if mailbox is None:
            return
        now = time.monotonic()
        replaced = mailbox.put(ReceivedFrame(message, now), camera)
        self.statistics[camera].record_received(now, replaced)

    def _serve_frames(self, mailbox: LatestFrameMailbox, results: ResultHandoff) -> None:
        while (waiting := mailbox.take()) is not None:
            started = time.monotonic()
            try:
                segmented = self._segment(waiting)
            except Exception as error:
                if mailbox.closed or self._shutting_down():
                    return  # serving stopped mid-frame and took the publishers with it
                self._record_failure([camera for camera, _ in waiting], error)
            else:
                if segmented is not None and not results.give(segmented):
                    return
            # At most max_rate_hz runs a second: frames arriving meanwhile replace the waiting
            # ones (counted as dropped), as when the model is busy.
            if self.max_rate_hz > 0:
                if mailbox.wait_closed(started + 1.0 / self.max_rate_hz - time.monotonic()):
                    return

    def _publish_results(self, mailbox: LatestFrameMailbox, results: ResultHandoff) -> None:
        while (item := results.take()) is not None:
            for frame, result in zip(item.decoded, item.results, strict=True):
                try:
                    self._publish(frame.camera, SegmentedFrame(
                        frame.frame.message, frame.image, result.labels, result.confidence,
                        frame.overlay_encoding))
                except Exception as error:
                    if mailbox.closed or self._shutting_down():
                        return  # serving stopped and took the publishers with it
                    self._record_failure([frame.camera], error)
                    continue
                self.statistics[frame.camera].record_processed(frame.frame, time.monotonic())

    def _record_failure(self, cameras: list[int], error: Exception) -> None:
        for camera in cameras:
            self.statistics[camera].record_failed(repr(error), time.monotonic())
        self._on_failed(repr(error), traceback.format_exc())

    def _segment(self, waiting: list[tuple[int, ReceivedFrame]]) -> _Results | None:
        """Decode and segment the waiting frames (None when none could be decoded)."""
        decoded = []
        for camera, frame in waiting:
            try:
                decoded.append(self.decode(camera, frame))
            except ImageConversionError as error:
                self.statistics[camera].record_rejected(str(error), time.monotonic())
                self._on_rejected(camera, str(error))
        if not decoded:
            return None
        confidence = any(self._wants_confidence(item.camera) for item in decoded)
        results = self.segmenter.segment_batch(
            [item.image for item in decoded], confidence=confidence,
            threshold=self.confidence_threshold)
        return _Results(decoded, list(results))

    def decode(self, camera: int, frame: ReceivedFrame) -> CameraFrame:
        message = frame.message
        if self.input_transport == "compressed":
            image = compressed_msg_to_rgb(message, self.max_pixels)
            overlay_encoding = "rgb8"  # decoded JPEG/PNG is RGB; there is no camera order to keep
        else:
            image = image_msg_to_rgb(message, self.max_pixels)
            overlay_encoding = output_encoding_for(message.encoding)
        return CameraFrame(camera, frame, image, overlay_encoding)
