"""The FBSNet ROS 2 node: camera images in; class ids, a colour mask and an overlay out.

Only the latest frame is ever processed. The subscription callback drops each message into a
one-slot mailbox and a worker thread runs conversion, inference and publishing, so a slow
model skips frames instead of building a backlog: latency stays bounded whatever the camera
rate. Inputs are found by remapping ``/camera/image_raw``; outputs live in the node's private
namespace (``/fbsnet/labels``, ``/fbsnet/color_mask``, ``/fbsnet/overlay`` by default), and
health is reported on ``/diagnostics`` once a second.

The input's reliability follows the camera (``input_reliability: auto``): reliable when every
publisher on the topic offers reliable, best effort otherwise. A best-effort reader loses
frames larger than Fast DDS's default shared-memory segment (about 512 KB) unless the
publisher's process loads ``config/fastdds_large_frames.xml``; lost frames, incompatible QoS
and publishers that send nothing are counted on ``/diagnostics`` instead of passing silently.
"""

from __future__ import annotations

import array
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import NamedTuple

import numpy as np
import rclpy
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fbsnet_ros.inference import CheckpointError, Segmenter, colorize, overlay
from fbsnet_ros.inference.backends import BackendUnavailable, backend_choices
from fbsnet_ros.inference.engine import UPSAMPLE_MODES
from fbsnet_ros.model import OUTPUT_STRIDE
from fbsnet_ros.ros.compat import (
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
    UnsupportedEventTypeError,
)
from fbsnet_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    output_encoding_for,
    rgb_to_image_fields,
)

NODE_NAME = "fbsnet"

# Absolute, so users remap exactly this name to their camera (the launch file's camera_topic).
INPUT_TOPIC = "/camera/image_raw"
# image_transport publishes the compressed stream under the raw topic's name plus this suffix.
COMPRESSED_SUFFIX = "/compressed"
INPUT_TRANSPORTS = ("raw", "compressed")

# Two deep: a subscriber that is briefly busy still gets the newest result, never a queue.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                        reliability=ReliabilityPolicy.RELIABLE)
# The latest frame is all the node wants, whatever the reliability.
INPUT_DEPTH = 1
INPUT_RELIABILITIES = ("auto", "reliable", "best_effort")
# How often `auto` (and the "publisher but no frames" check) looks at the input's publishers.
PUBLISHER_CHECK_PERIOD_S = 0.5
# Transport problems are logged at most once in this many seconds (always counted).
TRANSPORT_LOG_THROTTLE_S = 10.0
# What to do about frames lost between a camera and a best-effort reader.
LOST_FRAMES_FIX = (
    "large frames from a best-effort publisher need config/fastdds_large_frames.xml in the "
    "publisher's process (FASTDDS_DEFAULT_PROFILES_FILE; README, 'Large frames'), or a "
    "reliable publisher")

DIAGNOSTICS_PERIOD_S = 1.0
# FPS and "errors recently" look this far back.
STATISTICS_WINDOW_S = 5.0
# Input older than this, after input has been seen, means the camera has stalled.
STALE_INPUT_S = 2.0
# This many consecutive unusable frames is an error, not a warning: nothing is being served.
FAILED_STREAK_FOR_ERROR = 10
# Timings kept for the latency percentiles and the frame rate.
RECENT_SAMPLES = 200
# A frame still in inference at shutdown gets this long before the daemon worker is abandoned.
WORKER_JOIN_TIMEOUT_S = 2.0
# After SIGINT/SIGTERM the process ends within this long, even if the main thread is inside a
# long native call (a backend build, a large inference) that a Python exception cannot reach.
STOP_GRACE_S = 5.0
# Exit status for a start-up setting or file the node cannot use (as the fbsnet-ros CLI).
EXIT_USAGE = 2
# Largest accepted max_pixels: far above any camera, still a real guard against garbage headers.
MAX_PIXELS_LIMIT = 1_000_000_000

# Keys under these prefixes are consumed by rclpy when topics are created, not declared by us.
_FOREIGN_PARAMETER_PREFIXES = ("qos_overrides.",)


class StartupError(Exception):
    """A setting the node cannot start with; the message names the parameter or file."""


def parameter_declarations() -> list[tuple[str, object, ParameterDescriptor]]:
    """(name, default, descriptor) of every parameter, fresh each call (rclpy edits them)."""
    return [
        ("weights", "", ParameterDescriptor(
            description="FBSNet inference checkpoint (.pt); empty uses the CamVid weights "
                        "installed with the package",
            read_only=True)),
        ("device", "auto", ParameterDescriptor(
            description="torch device: auto picks CUDA when present, else the CPU",
            read_only=True, additional_constraints="one of: auto, cpu, cuda, cuda:N")),
        # Declared by type: rclpy cannot infer an integer array from an empty default.
        ("input_size", Parameter.Type.INTEGER_ARRAY, ParameterDescriptor(
            description="[height, width] the network sees; empty uses the checkpoint's",
            read_only=True,
            additional_constraints=f"empty, or two positive multiples of {OUTPUT_STRIDE}")),
        ("upsample", "bilinear", ParameterDescriptor(
            description="how class scores return to camera resolution: bilinear (smoother "
                        "borders) or nearest (cheaper)",
            read_only=True, additional_constraints="one of: " + ", ".join(UPSAMPLE_MODES))),
        ("backend", "torch", ParameterDescriptor(
            description="inference runtime, name[:precision]: torch (eager PyTorch, the "
                        "reference), torch-opt, onnxruntime, openvino; auto picks the fastest "
                        "installed one that passes the label-agreement test and logs its choice",
            read_only=True, additional_constraints="one of: " + ", ".join(backend_choices()))),
        ("input_transport", "raw", ParameterDescriptor(
            description="raw: sensor_msgs/Image on the input topic; compressed: "
                        f"sensor_msgs/CompressedImage on <input topic>{COMPRESSED_SUFFIX}",
            read_only=True, additional_constraints="one of: " + ", ".join(INPUT_TRANSPORTS))),
        ("input_reliability", "auto", ParameterDescriptor(
            description="input subscription reliability (keep-last 1): auto is reliable "
                        "when every publisher on the topic offers reliable, best effort "
                        "otherwise (also with no publisher yet), re-decided as publishers "
                        "come and go; a qos_overrides reliability for the topic wins",
            read_only=True,
            additional_constraints="one of: " + ", ".join(INPUT_RELIABILITIES))),
        ("max_pixels", 50_000_000, ParameterDescriptor(
            description="frames with more pixels are refused and counted as rejected",
            read_only=True,
            integer_range=[IntegerRange(from_value=1, to_value=MAX_PIXELS_LIMIT, step=1)])),
        ("overlay_alpha", 0.5, ParameterDescriptor(
            description="weight of the colour mask in the overlay: 0 shows the camera "
                        "image, 1 the mask only",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0)])),
        ("publish_color_mask", True, ParameterDescriptor(
            description="publish ~/color_mask (only computed while someone subscribes)")),
        ("publish_overlay", True, ParameterDescriptor(
            description="publish ~/overlay (only computed while someone subscribes)")),
    ]


class ReceivedFrame(NamedTuple):
    message: Image | CompressedImage
    received_at: float  # time.monotonic() when the message reached the node


class LatestFrameMailbox:
    """One slot shared by the subscription and the worker; a new frame replaces a waiting one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: ReceivedFrame | None = None
        self._closed = False

    def put(self, frame: ReceivedFrame) -> bool:
        """Store the frame; True when it replaced one the worker had not taken yet."""
        with self._condition:
            replaced = self._frame is not None
            self._frame = frame
            self._condition.notify()
        return replaced

    def take(self) -> ReceivedFrame | None:
        """Wait for a frame; None once the mailbox is closed."""
        with self._condition:
            while self._frame is None and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            frame, self._frame = self._frame, None
            return frame

    @property
    def closed(self) -> bool:
        return self._closed

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

    def diagnostic_status(self, name: str, hardware_id: str, now: float) -> DiagnosticStatus:
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
        return DiagnosticStatus(
            level=level, name=name, message=message, hardware_id=hardware_id,
            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()],
        )

    def _recent_fps(self, now: float) -> float:
        recent = [stamp for stamp in self._processed_at if now - stamp <= STATISTICS_WINDOW_S]
        if len(recent) < 2 or recent[-1] == recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _health(self, now: float) -> tuple[bytes, str]:
        outcomes = self._recent_outcomes
        if len(outcomes) == outcomes.maxlen and not any(outcomes):
            return DiagnosticStatus.ERROR, f"the last {len(outcomes)} frames all failed"
        if self._lost_at is not None and now - self._lost_at <= STATISTICS_WINDOW_S:
            return DiagnosticStatus.WARN, (
                f"frames lost in transport ({self.lost} so far): {LOST_FRAMES_FIX}")
        if self.input_publishers and self._publishers_since is not None:
            waiting_since = max(self._publishers_since, self._last_received_at or -math.inf)
            if now - waiting_since > STALE_INPUT_S:
                return DiagnosticStatus.WARN, (
                    f"{self.input_publishers} publisher(s) on the input but no frame for "
                    f"{now - waiting_since:.1f} s: incompatible QoS, or {LOST_FRAMES_FIX}")
        if self._last_received_at is not None and now - self._last_received_at > STALE_INPUT_S:
            return DiagnosticStatus.WARN, f"no input for {now - self._last_received_at:.1f} s"
        if self._error_at and now - self._error_at[-1] <= STATISTICS_WINDOW_S:
            return DiagnosticStatus.WARN, f"unusable frames in the last {STATISTICS_WINDOW_S:g} s"
        if self._last_received_at is None:
            return DiagnosticStatus.OK, "waiting for images"
        return DiagnosticStatus.OK, "segmenting"


def image_message(header: Header, fields: dict) -> Image:
    """An Image from rgb_to_image_fields output, with the input's header."""
    # An array.array takes the generated setter's fast path; bytes would be checked value by
    # value on distributions that validate message fields (Humble always does).
    return Image(header=header, **{**fields, "data": array.array("B", fields["data"])})


class SegmentationNode(Node):
    """Segments every camera frame it has time for and publishes labels, mask and overlay."""

    def __init__(self, **node_options) -> None:
        """node_options go to rclpy's Node: context, cli_args, parameter_overrides..."""
        super().__init__(NODE_NAME, **node_options)
        settings = self._declare_parameters()
        self._refuse_undeclared_parameters()
        self.max_pixels = settings["max_pixels"]
        self.input_transport = settings["input_transport"]
        self.overlay_alpha = settings["overlay_alpha"]
        self.publish_color_mask = settings["publish_color_mask"]
        self.publish_overlay = settings["publish_overlay"]
        self.segmenter = self._load_segmenter(settings)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.statistics = FrameStatistics()
        self.mailbox = LatestFrameMailbox()
        qos_overrides = QoSOverridingOptions.with_default_policies()
        output_events = PublisherEventCallbacks(incompatible_qos=self._on_output_incompatible_qos)
        self.labels_publisher = self.create_publisher(
            Image, "~/labels", OUTPUT_QOS, qos_overriding_options=qos_overrides,
            event_callbacks=output_events)
        self.color_mask_publisher = self.create_publisher(
            Image, "~/color_mask", OUTPUT_QOS, qos_overriding_options=qos_overrides,
            event_callbacks=output_events)
        self.overlay_publisher = self.create_publisher(
            Image, "~/overlay", OUTPUT_QOS, qos_overriding_options=qos_overrides,
            event_callbacks=output_events)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        # Resolved first so a remapped camera topic also moves its compressed stream.
        if self.input_transport == "compressed":
            self.input_topic = self.resolve_topic_name(INPUT_TOPIC) + COMPRESSED_SUFFIX
            self.input_type = CompressedImage
        else:
            self.input_topic, self.input_type = self.resolve_topic_name(INPUT_TOPIC), Image
        reliability_override = f"qos_overrides.{self.input_topic}.subscription.reliability"
        # `auto` follows the publishers, unless the YAML fixes the reliability either way.
        self.follow_publishers = (settings["input_reliability"] == "auto"
                                  and reliability_override not in self._parameter_overrides)
        reliability = (ReliabilityPolicy.RELIABLE if settings["input_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        self.image_subscription = self._subscribe_input(reliability, qos_overrides)
        self.statistics.record_input_reliability(self._input_reliability_name(), switched=False)
        self.publisher_check_timer = self.create_timer(
            PUBLISHER_CHECK_PERIOD_S, self._check_input_publishers)
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

        # A daemon, so a frame stuck in inference can never hold the process open at exit.
        self.worker = threading.Thread(target=self._serve_frames, name="fbsnet-worker",
                                       daemon=True)
        self.worker.start()
        self.get_logger().info(
            f"segmenting {self.image_subscription.topic_name} ({self.input_transport}, "
            f"{self._input_reliability_name()}"
            f"{', following its publishers' if self.follow_publishers else ''}) on "
            f"{self.segmenter.device} ({self.segmenter.backend_name}), network input "
            f"{self.segmenter.input_size}, {self.segmenter.num_classes} classes")

    def _declare_parameters(self) -> dict:
        settings = {}
        for name, default, descriptor in parameter_declarations():
            try:
                settings[name] = self.declare_parameter(name, default, descriptor).value
            except (InvalidParameterTypeException, InvalidParameterValueException) as error:
                raise StartupError(f"parameter '{name}': {error}") from None
        for name, allowed in (("input_transport", INPUT_TRANSPORTS),
                              ("input_reliability", INPUT_RELIABILITIES)):
            if settings[name] not in allowed:
                raise StartupError(f"parameter '{name}' must be one of {', '.join(allowed)}, "
                                   f"got '{settings[name]}'")
        return settings

    def _refuse_undeclared_parameters(self) -> None:
        # rclpy silently ignores overrides nobody declares; a misspelt setting must not pass.
        # _parameter_overrides holds this node's values from --params-file and -p on Humble,
        # Jazzy and Kilted alike; rclpy offers no public accessor.
        unknown = sorted(
            name for name in self._parameter_overrides
            if name not in self._parameters and not name.startswith(_FOREIGN_PARAMETER_PREFIXES)
        )
        if unknown:
            declared = ", ".join(name for name, _, _ in parameter_declarations())
            raise StartupError(
                f"unknown parameter(s) {', '.join(repr(name) for name in unknown)} given to "
                f"{self.get_fully_qualified_name()}; it declares: {declared}")

    def _load_segmenter(self, settings: dict) -> Segmenter:
        try:
            return Segmenter.from_checkpoint(
                settings["weights"] or None, device=settings["device"],
                input_size=list(settings["input_size"] or ()) or None,
                upsample=settings["upsample"], backend=settings["backend"])
        except CheckpointError as error:
            raise StartupError(f"parameter 'weights': {error}") from None
        except BackendUnavailable as error:
            raise StartupError(f"parameter 'backend': {error}") from None
        except ValueError as error:
            raise StartupError(f"invalid parameter: {error}") from None

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        # rclpy has already refused read-only names, wrong types and an alpha outside the
        # descriptor's range, on every distribution; what arrives here is valid, so apply it.
        for parameter in parameters:
            if parameter.name == "overlay_alpha":
                self.overlay_alpha = parameter.value
            elif parameter.name == "publish_color_mask":
                self.publish_color_mask = parameter.value
            elif parameter.name == "publish_overlay":
                self.publish_overlay = parameter.value
        return SetParametersResult(successful=True)

    def _subscribe_input(self, reliability: ReliabilityPolicy,
                         qos_overrides: QoSOverridingOptions):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=INPUT_DEPTH,
                         reliability=reliability)
        with_lost = SubscriptionEventCallbacks(incompatible_qos=self._on_input_incompatible_qos,
                                               message_lost=self._on_frames_lost)
        without_lost = SubscriptionEventCallbacks(
            incompatible_qos=self._on_input_incompatible_qos)
        for events in (with_lost, without_lost):
            try:
                return self.create_subscription(
                    self.input_type, self.input_topic, self._on_image, qos,
                    event_callbacks=events, qos_overriding_options=qos_overrides)
            except UnsupportedEventTypeError:
                # Some middlewares cannot report lost messages; the "publisher but no frames"
                # warning still catches a camera whose frames never come.
                self.get_logger().warning("this RMW does not report lost messages", once=True)
        raise AssertionError("unreachable: the second try registers no optional event")

    def _input_reliability_name(self) -> str:
        reliability = self.image_subscription.qos_profile.reliability
        return "reliable" if reliability == ReliabilityPolicy.RELIABLE else "best_effort"

    def _check_input_publishers(self) -> None:
        publishers = self.get_publishers_info_by_topic(self.input_topic)
        self.statistics.record_publishers(len(publishers), time.monotonic())
        if not self.follow_publishers:
            return
        all_reliable = bool(publishers) and all(
            publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            for publisher in publishers)
        wanted = ReliabilityPolicy.RELIABLE if all_reliable else ReliabilityPolicy.BEST_EFFORT
        if wanted == self.image_subscription.qos_profile.reliability:
            return
        # QoS is fixed per subscription: replace it. History and depth keep their (possibly
        # overridden) values; the reliability is ours to choose here.
        self.destroy_subscription(self.image_subscription)
        self.image_subscription = self._subscribe_input(
            wanted, QoSOverridingOptions([QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH]))
        reliability = self._input_reliability_name()
        self.statistics.record_input_reliability(reliability, switched=True)
        offered = ("all offer reliable" if all_reliable else
                   "none yet" if not publishers else "not all offer reliable")
        self.get_logger().info(
            f"input {self.input_topic} now {reliability}: {len(publishers)} publisher(s), "
            f"{offered}")

    def _on_frames_lost(self, info) -> None:
        self.statistics.record_lost(info.total_count_change, time.monotonic())
        self.get_logger().warning(
            f"{info.total_count} frame(s) lost in transport on {self.input_topic} "
            f"(input {self._input_reliability_name()}): {LOST_FRAMES_FIX}",
            throttle_duration_sec=TRANSPORT_LOG_THROTTLE_S)

    def _on_input_incompatible_qos(self, info) -> None:
        self.statistics.record_incompatible(info.total_count_change, input_side=True)
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.get_logger().warning(
            f"a publisher on {self.input_topic} offers QoS this subscription cannot match "
            f"({policy}; subscription is {self._input_reliability_name()}, volatile): no "
            "frames from it; a best-effort camera needs input_reliability auto or best_effort",
            throttle_duration_sec=TRANSPORT_LOG_THROTTLE_S)

    def _on_output_incompatible_qos(self, info) -> None:
        self.statistics.record_incompatible(info.total_count_change, input_side=False)
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.get_logger().warning(
            f"a subscriber requests QoS the outputs do not offer ({policy}; outputs are "
            "reliable, volatile, keep-last 2): it gets nothing; subscribe volatile, or "
            "override the publisher's QoS with qos_overrides.<topic>.publisher.*",
            throttle_duration_sec=TRANSPORT_LOG_THROTTLE_S)

    def _on_image(self, message: Image | CompressedImage) -> None:
        now = time.monotonic()
        replaced = self.mailbox.put(ReceivedFrame(message, now))
        self.statistics.record_received(now, replaced)

    def _serve_frames(self) -> None:
        while (frame := self.mailbox.take()) is not None:
            try:
                self._segment_and_publish(frame)
            except ImageConversionError as error:
                self.statistics.record_rejected(str(error), time.monotonic())
                self.get_logger().warning(f"skipping frame: {error}", throttle_duration_sec=5.0)
            except Exception as error:
                if self.mailbox.closed or not self.context.ok():
                    return  # shutdown began mid-frame and took the publishers with it
                self.statistics.record_failed(repr(error), time.monotonic())
                self.get_logger().error(
                    f"frame failed: {error!r}\n{traceback.format_exc()}",
                    throttle_duration_sec=5.0)

    def _segment_and_publish(self, frame: ReceivedFrame) -> None:
        message = frame.message
        if self.input_transport == "compressed":
            image = compressed_msg_to_rgb(message, self.max_pixels)
            overlay_encoding = "rgb8"  # decoded JPEG/PNG is RGB; there is no camera order to keep
        else:
            image = image_msg_to_rgb(message, self.max_pixels)
            overlay_encoding = output_encoding_for(message.encoding)
        labels = self.segmenter.predict(image)
        header = message.header
        self.labels_publisher.publish(image_message(header, rgb_to_image_fields(labels, "mono8")))

        # Colouring and blending are full passes at camera resolution: skip them when nobody
        # would see the result.
        want_color_mask = (self.publish_color_mask
                           and self.color_mask_publisher.get_subscription_count() > 0)
        want_overlay = self.publish_overlay and self.overlay_publisher.get_subscription_count() > 0
        if want_color_mask or want_overlay:
            color_mask = colorize(labels, self.segmenter.palette)
            if want_color_mask:
                self.color_mask_publisher.publish(
                    image_message(header, rgb_to_image_fields(color_mask, "rgb8")))
            if want_overlay:
                blended = overlay(image, color_mask, self.overlay_alpha)
                self.overlay_publisher.publish(
                    image_message(header, rgb_to_image_fields(blended, overlay_encoding)))
        self.statistics.record_processed(frame, time.monotonic())

    def _publish_diagnostics(self) -> None:
        status = self.statistics.diagnostic_status(
            f"{self.get_name()}: segmentation", str(self.segmenter.device), time.monotonic())
        header = Header(stamp=self.get_clock().now().to_msg())
        self.diagnostics_publisher.publish(DiagnosticArray(header=header, status=[status]))

    def destroy_node(self) -> None:
        # rclpy's shutdown also destroys a node whose __init__ failed before the worker existed.
        if hasattr(self, "worker"):
            self.mailbox.close()
            self.worker.join(timeout=WORKER_JOIN_TIMEOUT_S)
        super().destroy_node()


def missing_params_files(arguments: list[str]) -> list[str]:
    """The --params-file arguments (inside --ros-args) that name no readable file."""
    missing, in_ros_args = [], False
    for index, argument in enumerate(arguments):
        if argument == "--ros-args":
            in_ros_args = True
        elif argument == "--":
            in_ros_args = False
        elif in_ros_args and argument == "--params-file" and index + 1 < len(arguments):
            path = arguments[index + 1]
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                missing.append(path)
    return missing


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread, and end the process
    STOP_GRACE_S later if it is still running (the main thread stuck in native code).

    rclpy.init, called after this, chains its own handlers (which shut the context down) to
    these, so a signal during start-up (weights, backend build) stops the node like Ctrl-C
    during spin; without it SIGTERM left start-up running into a dead context.
    """
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)  # written from the C handler, whatever Python is doing
    stopping = threading.Event()
    stop_signals = (signal.SIGINT, signal.SIGTERM)

    def raise_keyboard_interrupt(signum, frame):
        if not stopping.is_set():  # a second signal must not interrupt the clean-up
            stopping.set()
            raise KeyboardInterrupt

    def exit_if_stuck():
        # Each byte is the number of a signal Python handles; only a stop signal counts.
        while os.read(wakeup_read, 1)[0] not in stop_signals:
            pass
        time.sleep(STOP_GRACE_S)
        os.write(2, f"[{NODE_NAME}] still busy {STOP_GRACE_S:g} s after the stop signal: "
                    "exiting without clean-up\n".encode())
        os._exit(0)

    for signum in stop_signals:
        signal.signal(signum, raise_keyboard_interrupt)
    threading.Thread(target=exit_if_stuck, name="fbsnet-stop-watchdog", daemon=True).start()


def main(args=None) -> int:
    """Console-script entry point; returns the process exit status."""
    missing = missing_params_files(sys.argv if args is None else args)
    if missing:
        print(f"[FATAL] [{NODE_NAME}]: parameter file {missing[0]}: no such readable file",
              file=sys.stderr)
        return EXIT_USAGE
    _stop_on_signals()
    rclpy.init(args=args)
    node = None
    try:
        node = SegmentationNode()
        rclpy.spin(node)
    except StartupError as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(error))
        return EXIT_USAGE
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
