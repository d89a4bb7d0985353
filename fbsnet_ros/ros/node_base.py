"""What the plain and the managed segmentation node share on the ROS side.

The parameter table, the cameras' subscriptions and publishers, QoS events, diagnostics, label
info and camera_info passthrough, and the process entry point. The frame work itself (mailbox,
worker, model, statistics) is the ROS-free `node_core`; the camera images are taken by
`frame_intake`'s thread, everything else by the executor. `SegmentationNodeBase` is a mixin for
rclpy's `Node` or `LifecycleNode`: the plain node opens everything in its constructor, the
managed one step by step in its transitions.

One camera (``camera_namespaces`` empty, the default): the input is found by remapping
``/camera/image_raw`` (and ``/camera/camera_info``, which by default follows the image topic as
its sibling); outputs live in the node's private namespace (``/fbsnet/labels``,
``confidence``, ``color_mask``, ``overlay``, ``camera_info``, ``label_info``). Several cameras:
for each namespace ``<cam>`` the inputs are ``<cam>/image_raw`` and ``<cam>/camera_info``, the
outputs ``<cam>/fbsnet/...``. Health is reported on ``/diagnostics`` once a second, one
status per camera.

The input's reliability follows the camera (``input_reliability: auto``): reliable when every
publisher on the topic offers reliable, best effort otherwise. A best-effort reader loses
frames larger than Fast DDS's default shared-memory segment (about 512 KB) unless the
publisher's process loads ``config/fastdds_large_frames.xml``; lost frames, incompatible QoS
and publishers that send nothing are counted on ``/diagnostics`` instead of passing silently.
"""

from __future__ import annotations

import array
import os
import sys
import threading
import time
from collections import deque

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
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from fbsnet_ros.inference import colorize, overlay
from fbsnet_ros.inference.backends import available_backends, backend_choices
from fbsnet_ros.inference.engine import UPSAMPLE_MODES
from fbsnet_ros.model import OUTPUT_STRIDE
from fbsnet_ros.ros import stop_signals
from fbsnet_ros.ros.compat import (
    PublisherEventCallbacks,
    SubscriptionEventCallbacks,
    UnsupportedEventTypeError,
    parameter_override_names,
)
from fbsnet_ros.ros.frame_intake import FrameIntake, IntakeGroup
from fbsnet_ros.ros.image_conversion import rgb_to_image_fields
from fbsnet_ros.ros.names import (
    CAMERA_INFO_NAME,
    CAMERA_INFO_TOPIC,
    CAMERA_TOPIC,
    COMPRESSED_SUFFIX,
    NODE_NAME,
    READY_LINE,
)
from fbsnet_ros.ros.node_core import (
    LOST_FRAMES_FIX,
    SEGMENTER_SETTINGS,
    FrameStatistics,
    HealthLevel,
    HealthReport,
    SegmentationCore,
    SegmentedFrame,
)
from fbsnet_ros.ros.stamps import stamp_to_ns

# Absolute, so users remap exactly this name to their camera (the launch file's camera_topic).
INPUT_TOPIC = CAMERA_TOPIC
# Under each of camera_namespaces: the camera's image topic (camera_info is its sibling).
CAMERA_IMAGE_NAME = "image_raw"
INPUT_TRANSPORTS = ("raw", "compressed")

# Two deep: a subscriber that is briefly busy still gets the newest result, never a queue.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                        reliability=ReliabilityPolicy.RELIABLE)
# vision_msgs' convention: the class table is latched, so a subscriber that starts later gets it.
LABEL_INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                            reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
# camera_info messages the subscription keeps; its reliability follows the image input's
# (a driver publishes both alike): a best-effort reader of a reliable writer was seen here to
# miss every camera_info, now and then, in Fast DDS.
CAMERA_INFO_INPUT_DEPTH = 5
# camera_info messages kept to find the one with a label image's stamp.
CAMERA_INFO_HISTORY = 10
# The latest frame is all the node wants, whatever the reliability.
INPUT_DEPTH = 1
INPUT_RELIABILITIES = ("auto", "reliable", "best_effort")
# How often `auto` (and the "publisher but no frames" check) looks at the input's publishers.
PUBLISHER_CHECK_PERIOD_S = 0.5
# Transport problems are logged at most once in this many seconds (always counted).
TRANSPORT_LOG_THROTTLE_S = 10.0
# Unusable frames and frame errors are logged at most once in this many seconds.
FRAME_LOG_THROTTLE_S = 5.0
DIAGNOSTICS_PERIOD_S = 1.0
# Exit status for a start-up setting or file the node cannot use (as the fbsnet-ros CLI).
EXIT_USAGE = 2
# Largest accepted max_pixels: far above any camera, still a real guard against garbage headers.
MAX_PIXELS_LIMIT = 1_000_000_000
# Frames per second a camera can sensibly ask for; max_rate_hz 0 means unbounded.
MAX_RATE_LIMIT_HZ = 1000.0
# Most threads inference_threads accepts (0: the runtime's default, every core).
MAX_INFERENCE_THREADS = 256

# Keys under these prefixes are consumed by rclpy when topics are created, not declared by us.
_FOREIGN_PARAMETER_PREFIXES = ("qos_overrides.",)
# What the managed node's reloadable parameters say about when they apply.
_RELOADABLE_NOTE = "; managed node: may change while unconfigured, applies at the next configure"


class StartupError(Exception):
    """A setting the node cannot start with; the message names the parameter or file."""


def parameter_declarations(managed: bool = False) -> list[tuple[str, object, ParameterDescriptor]]:
    """(name, default, descriptor) of every parameter, fresh each call (rclpy edits them).

    managed: the lifecycle node, where weights, device, input_size and backend are not
    read-only but change only while unconfigured (they are read at each configure).
    """
    reloadable = _RELOADABLE_NOTE if managed else ""
    return [
        ("weights", "", ParameterDescriptor(
            description="FBSNet inference checkpoint (.pt); empty uses the CamVid weights "
                        "installed with the package" + reloadable,
            read_only=not managed)),
        ("device", "auto", ParameterDescriptor(
            description="torch device: auto picks CUDA when present, else the CPU" + reloadable,
            read_only=not managed, additional_constraints="one of: auto, cpu, cuda, cuda:N")),
        # Declared by type: rclpy cannot infer an integer array from an empty default.
        ("input_size", Parameter.Type.INTEGER_ARRAY, ParameterDescriptor(
            description="[height, width] the network sees; empty uses the checkpoint's"
                        + reloadable,
            read_only=not managed,
            additional_constraints=f"empty, or two positive multiples of {OUTPUT_STRIDE}")),
        ("upsample", "bilinear", ParameterDescriptor(
            description="how class scores return to camera resolution: bilinear (smoother "
                        "borders) or nearest (cheaper)",
            read_only=True, additional_constraints="one of: " + ", ".join(UPSAMPLE_MODES))),
        ("inference_threads", 0, ParameterDescriptor(
            description="CPU threads inference may use (the runtime's pool and torch's): 0 "
                        "lets the runtime use every core; on a small robot computer 1 leaves "
                        "the other cores to the camera driver and the rest of the stack"
                        + reloadable,
            read_only=not managed,
            integer_range=[IntegerRange(from_value=0, to_value=MAX_INFERENCE_THREADS, step=1)])),
        ("backend", "auto", ParameterDescriptor(
            description="inference runtime, name[:precision]: auto (default) picks the fastest "
                        "installed one that passes the accuracy gates and logs its choice; "
                        "torch (eager PyTorch, the reference), torch-opt, onnxruntime, openvino"
                        + reloadable,
            read_only=not managed,
            additional_constraints="one of: " + ", ".join(backend_choices()))),
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
        ("max_rate_hz", 15.0, ParameterDescriptor(
            description="most network runs per second (each runs every camera's latest "
                        "frame); frames arriving faster replace the waiting one and are counted "
                        "as dropped; 0 is unbounded. Bounds the node's CPU use on a shared "
                        "machine; can be changed while running",
            floating_point_range=[FloatingPointRange(from_value=0.0,
                                                     to_value=MAX_RATE_LIMIT_HZ)])),
        ("confidence_threshold", 0.0, ParameterDescriptor(
            description="pixels whose top class probability is below this get the label 255 "
                        "(unlabeled, vision_msgs' value; drawn black); 0 is off. LabelInfo's "
                        "threshold follows it; can be changed while running",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0)])),
        ("camera_namespaces", Parameter.Type.STRING_ARRAY, ParameterDescriptor(
            description="several cameras served by one model: for each namespace <cam>, "
                        f"input <cam>/{CAMERA_IMAGE_NAME} (or its compressed sibling) and "
                        f"<cam>/{CAMERA_INFO_NAME}, outputs <cam>/<node name>/..., one "
                        "/diagnostics status each; their frames run together. Empty: one "
                        f"camera on the remappable {CAMERA_TOPIC}, outputs ~/...",
            read_only=True)),
        ("publish_color_mask", True, ParameterDescriptor(
            description="publish ~/color_mask (only computed while someone subscribes)")),
        ("publish_overlay", True, ParameterDescriptor(
            description="publish ~/overlay (only computed while someone subscribes)")),
    ]


def image_message(header: Header, fields: dict) -> Image:
    """An Image from rgb_to_image_fields output, with the input's header."""
    # An array.array takes the generated setter's fast path; bytes would be checked value by
    # value on distributions that validate message fields (Humble always does).
    return Image(header=header, **{**fields, "data": array.array("B", fields["data"])})


def diagnostic_status(report: HealthReport, name: str, hardware_id: str) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=bytes([int(report.level)]), name=name, message=report.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in report.values.items()])


def camera_info_for(info: CameraInfo, header: Header) -> CameraInfo:
    """The calibration with the labels' header: labels are at camera resolution, so the
    intrinsics are unchanged (a cropped network input would have to move them)."""
    return CameraInfo(
        header=header, height=info.height, width=info.width,
        distortion_model=info.distortion_model, d=info.d, k=info.k, r=info.r, p=info.p,
        binning_x=info.binning_x, binning_y=info.binning_y, roi=info.roi)


class CameraInfoPairing:
    """Which camera_info goes with which label image.

    Drivers stamp camera_info like the image, but the two topics arrive in either order: a
    label image takes the camera_info with its stamp, or the first one at or after it (a
    driver that stamps them differently); until that arrives, its header waits here.
    """

    def __init__(self) -> None:
        self._infos: deque[CameraInfo] = deque(maxlen=CAMERA_INFO_HISTORY)
        self._waiting: deque[Header] = deque(maxlen=CAMERA_INFO_HISTORY)

    def for_labels(self, header: Header) -> CameraInfo | None:
        if not self._infos:
            return None  # no camera_info in, none out
        stamp = stamp_to_ns(header.stamp)
        at_or_after = [info for info in self._infos if stamp_to_ns(info.header.stamp) >= stamp]
        if at_or_after:
            return min(at_or_after, key=lambda info: stamp_to_ns(info.header.stamp))
        self._waiting.append(header)
        return None

    def for_camera_info(self, info: CameraInfo) -> list[Header]:
        """The waiting label headers this camera_info answers (its stamp or earlier)."""
        self._infos.append(info)
        stamp = stamp_to_ns(info.header.stamp)
        answered = [header for header in self._waiting if stamp_to_ns(header.stamp) <= stamp]
        self._waiting = deque((header for header in self._waiting
                               if stamp_to_ns(header.stamp) > stamp),
                              maxlen=CAMERA_INFO_HISTORY)
        return answered


class CameraChannel:
    """One camera's side of the node: its inputs and their QoS, its outputs, its camera_info
    pairing and label info, its statistics. `index` is its place in the core's mailbox."""

    def __init__(self, node: SegmentationNodeBase, index: int, namespace: str) -> None:
        self.node, self.index, self.namespace = node, index, namespace
        self.statistics: FrameStatistics = node.core.statistics[index]
        if namespace:
            base = namespace.rstrip("/")
            image_topic = node.resolve_topic_name(f"{base}/{CAMERA_IMAGE_NAME}")
            self.camera_info_topic = node.resolve_topic_name(f"{base}/{CAMERA_INFO_NAME}")
            self.output_prefix = f"{base}/{node.get_name()}/"
            self.status_name = f"{node.get_name()}: segmentation {image_topic.rsplit('/', 1)[0]}"
        else:
            # Resolved first so a remapped camera topic also moves its compressed stream.
            image_topic = node.resolve_topic_name(INPUT_TOPIC)
            remapped_info = node.resolve_topic_name(CAMERA_INFO_TOPIC)
            self.camera_info_topic = (
                remapped_info if remapped_info != CAMERA_INFO_TOPIC
                else image_topic.rsplit("/", 1)[0] + "/" + CAMERA_INFO_NAME)
            self.output_prefix = "~/"
            self.status_name = f"{node.get_name()}: segmentation"
        if node.core.input_transport == "compressed":
            self.input_topic, self.input_type = image_topic + COMPRESSED_SUFFIX, CompressedImage
        else:
            self.input_topic, self.input_type = image_topic, Image
        self.image_subscription = self.camera_info_subscription = None
        self.follow_publishers = False
        self.outputs_open = False

    # -- outputs ---------------------------------------------------------------------------------

    def open_outputs(self) -> None:
        node = self.node
        qos_overrides = QoSOverridingOptions.with_default_policies()
        output_events = PublisherEventCallbacks(incompatible_qos=self._on_output_incompatible_qos)

        def output(name: str, message_type=Image):
            return node.create_publisher(message_type, self.output_prefix + name, OUTPUT_QOS,
                                         qos_overriding_options=qos_overrides,
                                         event_callbacks=output_events)

        self.labels_publisher = output("labels")
        self.confidence_publisher = output("confidence")
        self.color_mask_publisher = output("color_mask")
        self.overlay_publisher = output("overlay")
        self.camera_info_publisher = output("camera_info", CameraInfo)
        self.label_info_publisher = node.create_label_info_publisher(
            self.output_prefix + "label_info")
        self._camera_info_pairing = CameraInfoPairing()
        self._camera_info_lock = threading.Lock()
        self._label_info_frame_id: str | None = None
        self._label_info_threshold: float | None = None
        self.outputs_open = True

    def close_outputs(self) -> None:
        if not self.outputs_open:
            return
        self.outputs_open = False
        for publisher in (self.labels_publisher, self.confidence_publisher,
                          self.color_mask_publisher, self.overlay_publisher,
                          self.camera_info_publisher, self.label_info_publisher):
            if publisher is not None:
                self.node.destroy_publisher(publisher)

    def wants_confidence(self) -> bool:
        return self.outputs_open and self.confidence_publisher.get_subscription_count() > 0

    def publish_label_info(self, header: Header | None = None) -> None:
        """The class table, latched; republished when the camera's frame_id or the confidence
        threshold changes (header None: now, with the frame_id known so far)."""
        if self.label_info_publisher is None:
            return
        threshold = self.node.core.confidence_threshold
        if header is None:
            header = Header(stamp=self.node.get_clock().now().to_msg(),
                            frame_id=self._label_info_frame_id or "")
        elif (header.frame_id == self._label_info_frame_id
              and threshold == self._label_info_threshold):
            return
        from vision_msgs.msg import LabelInfo, VisionClass
        class_map = [VisionClass(class_id=class_id, class_name=name)
                     for class_id, name in enumerate(self.node.core.segmenter.class_names)]
        self.label_info_publisher.publish(
            LabelInfo(header=header, class_map=class_map, threshold=threshold))
        self._label_info_frame_id = header.frame_id
        self._label_info_threshold = threshold

    # -- inputs ----------------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Subscribe to the camera and its camera_info."""
        node = self.node
        reliability_override = f"qos_overrides.{self.input_topic}.subscription.reliability"
        # `auto` follows the publishers, unless the YAML fixes the reliability either way.
        self.follow_publishers = (node.input_reliability == "auto"
                                  and reliability_override not in node.given_parameters)
        reliability = (ReliabilityPolicy.RELIABLE if node.input_reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        self.image_subscription = self._subscribe_input(
            reliability, QoSOverridingOptions.with_default_policies())
        self._subscribe_camera_info()
        self.statistics.record_input_reliability(self.input_reliability_name(), switched=False)

    def unsubscribe(self) -> None:
        for subscription in (self.image_subscription, self.camera_info_subscription):
            if subscription is not None:
                self.node.destroy_subscription(subscription)
        self.image_subscription = self.camera_info_subscription = None

    def _subscribe_camera_info(self) -> None:
        """(Re)subscribe to camera_info with the image input's reliability."""
        if self.camera_info_subscription is not None:
            self.node.destroy_subscription(self.camera_info_subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=CAMERA_INFO_INPUT_DEPTH,
                         reliability=self.image_subscription.qos_profile.reliability)
        self.camera_info_subscription = self.node.create_subscription(
            CameraInfo, self.camera_info_topic, self._on_camera_info, qos)

    def _subscribe_input(self, reliability: ReliabilityPolicy,
                         qos_overrides: QoSOverridingOptions):
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=INPUT_DEPTH,
                         reliability=reliability)
        with_lost = SubscriptionEventCallbacks(incompatible_qos=self._on_input_incompatible_qos,
                                               message_lost=self._on_frames_lost)
        without_lost = SubscriptionEventCallbacks(
            incompatible_qos=self._on_input_incompatible_qos)
        intake = self.node.core.intake
        index = self.index
        for events in (with_lost, without_lost):
            try:
                return self.node.create_subscription(
                    self.input_type, self.input_topic,
                    lambda message: intake(message, index), qos,
                    callback_group=self.node.intake_group,
                    event_callbacks=events, qos_overriding_options=qos_overrides)
            except UnsupportedEventTypeError:
                # Some middlewares cannot report lost messages; the "publisher but no frames"
                # warning still catches a camera whose frames never come.
                self.node.get_logger().warning("this RMW does not report lost messages",
                                               once=True)
        raise AssertionError("unreachable: the second try registers no optional event")

    def input_reliability_name(self) -> str:
        reliability = self.image_subscription.qos_profile.reliability
        return "reliable" if reliability == ReliabilityPolicy.RELIABLE else "best_effort"

    def check_input_publishers(self) -> None:
        node = self.node
        publishers = node.get_publishers_info_by_topic(self.input_topic)
        self.statistics.record_publishers(len(publishers), time.monotonic())
        if not self.follow_publishers or self.image_subscription is None:
            return
        all_reliable = bool(publishers) and all(
            publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            for publisher in publishers)
        wanted = ReliabilityPolicy.RELIABLE if all_reliable else ReliabilityPolicy.BEST_EFFORT
        if wanted == self.image_subscription.qos_profile.reliability:
            return
        # QoS is fixed per subscription: replace it. History and depth keep their (possibly
        # overridden) values; the reliability is ours to choose here.
        replaced = self.image_subscription
        self.image_subscription = self._subscribe_input(
            wanted, QoSOverridingOptions([QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH]))
        node.frame_intake.replace(replaced, self.image_subscription)
        node.destroy_subscription(replaced)
        self._subscribe_camera_info()
        reliability = self.input_reliability_name()
        self.statistics.record_input_reliability(reliability, switched=True)
        offered = ("all offer reliable" if all_reliable else
                   "none yet" if not publishers else "not all offer reliable")
        node.get_logger().info(
            f"input {self.input_topic} now {reliability}: {len(publishers)} publisher(s), "
            f"{offered}")

    # -- events and results ----------------------------------------------------------------------

    def _on_frames_lost(self, info) -> None:
        if self.input_reliability_name() == "reliable":
            # Reliable delivery loses nothing on the way: Fast DDS reports the frames a newer
            # one replaced in the keep-last-1 history before the node took them (a camera
            # faster than the node). Dropped, as the mailbox drops them; no transport fault.
            self.statistics.record_replaced(info.total_count_change)
            return
        self.statistics.record_lost(info.total_count_change, time.monotonic())
        self.node.get_logger().warning(
            f"{info.total_count} frame(s) lost in transport on {self.input_topic} "
            f"(input {self.input_reliability_name()}): {LOST_FRAMES_FIX}",
            throttle_duration_sec=TRANSPORT_LOG_THROTTLE_S)

    def _on_input_incompatible_qos(self, info) -> None:
        self.statistics.record_incompatible(info.total_count_change, input_side=True)
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.node.get_logger().warning(
            f"a publisher on {self.input_topic} offers QoS this subscription cannot match "
            f"({policy}; subscription is {self.input_reliability_name()}, volatile): no "
            "frames from it; a best-effort camera needs input_reliability auto or best_effort",
            throttle_duration_sec=TRANSPORT_LOG_THROTTLE_S)

    def _on_output_incompatible_qos(self, info) -> None:
        self.statistics.record_incompatible(info.total_count_change, input_side=False)
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.node.get_logger().warning(
            f"a subscriber requests QoS the outputs do not offer ({policy}; outputs are "
            "reliable, volatile, keep-last 2): it gets nothing; subscribe volatile, or "
            "override the publisher's QoS with qos_overrides.<topic>.publisher.*",
            throttle_duration_sec=TRANSPORT_LOG_THROTTLE_S)

    def publish_results(self, result: SegmentedFrame) -> None:
        node = self.node
        header, labels = result.message.header, result.labels
        self.labels_publisher.publish(image_message(header, rgb_to_image_fields(labels, "mono8")))
        if result.confidence is not None and self.wants_confidence():
            self.confidence_publisher.publish(
                image_message(header, rgb_to_image_fields(result.confidence, "mono8")))
        self._publish_camera_info(header)
        self.publish_label_info(header)
        # Colouring and blending are full passes at camera resolution: skip them when nobody
        # would see the result.
        want_color_mask = (node.publish_color_mask
                           and self.color_mask_publisher.get_subscription_count() > 0)
        want_overlay = node.publish_overlay and self.overlay_publisher.get_subscription_count() > 0
        if want_color_mask or want_overlay:
            # Unlabeled pixels (255) are past the palette: black.
            color_mask = colorize(labels, node.core.segmenter.palette)
            if want_color_mask:
                self.color_mask_publisher.publish(
                    image_message(header, rgb_to_image_fields(color_mask, "rgb8")))
            if want_overlay:
                blended = overlay(result.image, color_mask, node.overlay_alpha)
                self.overlay_publisher.publish(
                    image_message(header, rgb_to_image_fields(blended, result.overlay_encoding)))

    def _publish_camera_info(self, header: Header) -> None:
        """Each label image's camera_info, under the labels' header, once it is known."""
        with self._camera_info_lock:
            info = self._camera_info_pairing.for_labels(header)
        if info is not None:
            self.camera_info_publisher.publish(camera_info_for(info, header))

    def _on_camera_info(self, info: CameraInfo) -> None:
        if not self.outputs_open:
            return
        with self._camera_info_lock:
            headers = self._camera_info_pairing.for_camera_info(info)
        for header in headers:
            self.camera_info_publisher.publish(camera_info_for(info, header))

    def status(self) -> DiagnosticStatus:
        core = self.node.core
        report = self.statistics.report(time.monotonic())
        if not core.serving:
            # Inactive on purpose: stale input is no fault; the counters still tell the story.
            report = HealthReport(HealthLevel.OK, "configured, not serving (inactive)",
                                  report.values)
        segmenter = core.segmenter
        return diagnostic_status(report, self.status_name,
                                 str(segmenter.device) if segmenter is not None else "")


class SegmentationNodeBase:
    """The segmentation node's ROS side, mixed into rclpy's Node or LifecycleNode.

    declare_settings (constructor) -> open_outputs (model loaded) -> start_serving
    -> stop_serving -> close_outputs; the plain node runs the first three at once.
    """

    managed = False

    # -- settings ------------------------------------------------------------------------------

    def declare_settings(self) -> None:
        """Declare every parameter, refuse unknown ones, and build the core (no model yet)."""
        # What the user gave (--params-file, -p), read before anything declares more.
        self.given_parameters = parameter_override_names(self)
        settings = {}
        for name, default, descriptor in parameter_declarations(self.managed):
            try:
                settings[name] = self.declare_parameter(name, default, descriptor).value
            except (InvalidParameterTypeException, InvalidParameterValueException) as error:
                raise StartupError(f"parameter '{name}': {error}") from None
        for name, allowed in (("input_transport", INPUT_TRANSPORTS),
                              ("input_reliability", INPUT_RELIABILITIES)):
            if settings[name] not in allowed:
                raise StartupError(f"parameter '{name}' must be one of {', '.join(allowed)}, "
                                   f"got '{settings[name]}'")
        namespaces = list(settings["camera_namespaces"] or [])
        problem = camera_namespaces_problem(namespaces)
        if problem:
            raise StartupError(f"parameter 'camera_namespaces': {problem}")
        self._refuse_undeclared_parameters()
        self.input_reliability = settings["input_reliability"]
        self.overlay_alpha = settings["overlay_alpha"]
        self.publish_color_mask = settings["publish_color_mask"]
        self.publish_overlay = settings["publish_overlay"]
        # The camera images are taken on a thread of their own, not by the executor (see
        # frame_intake); the rest of the node is the executor's.
        self.intake_group = IntakeGroup()
        self.frame_intake = FrameIntake(self.context, on_error=self._on_frame_failed)
        self.core = SegmentationCore(
            input_transport=settings["input_transport"], max_pixels=settings["max_pixels"],
            publish=self._publish_results, on_rejected=self._on_frame_rejected,
            on_failed=self._on_frame_failed, shutting_down=lambda: not self.context.ok(),
            cameras=max(1, len(namespaces)),
            wants_confidence=lambda camera: self.cameras[camera].wants_confidence(),
            confidence_threshold=settings["confidence_threshold"],
            max_rate_hz=settings["max_rate_hz"])
        self.cameras = [CameraChannel(self, index, namespace)
                        for index, namespace in enumerate(namespaces or [""])]
        self.outputs_open = False
        self.publisher_check_timer = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def segmenter_settings(self) -> dict:
        """The settings the model is built from, read now (the managed node's may change)."""
        # get_parameter_or: an unset input_size (declared by type) reads as None, not an error.
        return {name: self.get_parameter_or(name, Parameter(name)).value
                for name in SEGMENTER_SETTINGS}

    def _refuse_undeclared_parameters(self) -> None:
        # rclpy silently ignores overrides nobody declares; a misspelt setting must not pass.
        unknown = sorted(
            name for name in self.given_parameters
            if not self.has_parameter(name) and not name.startswith(_FOREIGN_PARAMETER_PREFIXES)
        )
        if unknown:
            declared = ", ".join(name for name, _, _ in parameter_declarations())
            raise StartupError(
                f"unknown parameter(s) {', '.join(repr(name) for name in unknown)} given to "
                f"{self.get_fully_qualified_name()}; it declares: {declared}")

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        # rclpy has already refused read-only names, wrong types and values outside the
        # descriptors' ranges, on every distribution. Model settings (managed node only) wait
        # for the next configure, so they may not change under a loaded model.
        for parameter in parameters:
            if parameter.name in SEGMENTER_SETTINGS and self.core.loaded:
                return SetParametersResult(
                    successful=False,
                    reason=f"'{parameter.name}' changes only while unconfigured (cleanup "
                           "first); it applies at the next configure")
        for parameter in parameters:
            if parameter.name == "overlay_alpha":
                self.overlay_alpha = parameter.value
            elif parameter.name == "publish_color_mask":
                self.publish_color_mask = parameter.value
            elif parameter.name == "publish_overlay":
                self.publish_overlay = parameter.value
            elif parameter.name == "max_rate_hz":
                self.core.max_rate_hz = parameter.value
            elif parameter.name == "confidence_threshold":
                self.core.confidence_threshold = parameter.value
                if self.outputs_open and self.core.loaded:
                    for camera in self.cameras:
                        camera.publish_label_info()
        return SetParametersResult(successful=True)

    # -- outputs (configured) --------------------------------------------------------------------

    def open_outputs(self) -> None:
        """Publishers and the diagnostics timer, once the model is loaded."""
        for camera in self.cameras:
            camera.open_outputs()
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.outputs_open = True

    def close_outputs(self) -> None:
        if not self.outputs_open:
            return
        self.outputs_open = False
        self.destroy_timer(self.diagnostics_timer)
        for camera in self.cameras:
            camera.close_outputs()
        self.destroy_publisher(self.diagnostics_publisher)

    def create_label_info_publisher(self, topic: str):
        try:
            from vision_msgs.msg import LabelInfo
        except ImportError as error:
            self.get_logger().warning(
                f"no {topic}: vision_msgs is not installed ({error}); rosdep installs it "
                "on a ROS install, `make install` builds it into the venv", once=True)
            return None
        return self.create_publisher(LabelInfo, topic, LABEL_INFO_QOS)

    # -- serving (active) ------------------------------------------------------------------------

    def start_serving(self) -> None:
        """Subscribe to the cameras and their camera_info, and segment what arrives."""
        for camera in self.cameras:
            # Published at once so consumers can set up; the camera's frame_id follows with
            # the first frame.
            camera.publish_label_info()
        self.core.start()
        for camera in self.cameras:
            camera.subscribe()
        self.frame_intake.start([camera.image_subscription for camera in self.cameras])
        self.publisher_check_timer = self.create_timer(
            PUBLISHER_CHECK_PERIOD_S, self._check_input_publishers)
        segmenter = self.core.segmenter
        inputs = ", ".join(
            f"{camera.image_subscription.topic_name} ({self.core.input_transport}, "
            f"{camera.input_reliability_name()}"
            f"{', following its publishers' if camera.follow_publishers else ''})"
            for camera in self.cameras)
        batching = ""
        if len(self.cameras) > 1:
            backend = segmenter.backend
            batching = ("; cameras run together (one batch, or parallel streams)"
                        if backend.batching else
                        f"; cameras run in turn: {backend.name} cannot batch "
                        f"({backend.batching_refusal})")
        rate = (f"at most {self.core.max_rate_hz:g} runs/s" if self.core.max_rate_hz > 0
                else "unbounded rate")
        threads = segmenter.threads or "default"
        self.get_logger().info(
            f"{READY_LINE} {inputs} on {segmenter.device} ({segmenter.backend_name}, "
            f"{threads} threads, {rate}{batching}), network input {segmenter.input_size}, "
            f"{segmenter.num_classes} classes; backends installed here: "
            f"{', '.join(available_backends(segmenter.device))}")

    def stop_serving(self) -> None:
        """Unsubscribe and stop the worker; the model and the publishers stay."""
        if self.publisher_check_timer is not None:
            self.destroy_timer(self.publisher_check_timer)
        self.publisher_check_timer = None
        self.frame_intake.stop()
        for camera in self.cameras:
            camera.unsubscribe()
        self.core.stop()

    def _check_input_publishers(self) -> None:
        for camera in self.cameras:
            camera.check_input_publishers()

    # -- events and results ----------------------------------------------------------------------

    def _on_frame_rejected(self, camera: int, reason: str) -> None:
        where = f" from {self.cameras[camera].input_topic}" if len(self.cameras) > 1 else ""
        self.get_logger().warning(f"skipping frame{where}: {reason}",
                                  throttle_duration_sec=FRAME_LOG_THROTTLE_S)

    def _on_frame_failed(self, reason: str, details: str) -> None:
        self.get_logger().error(f"frame failed: {reason}\n{details}",
                                throttle_duration_sec=FRAME_LOG_THROTTLE_S)

    def _publish_results(self, camera: int, result: SegmentedFrame) -> None:
        self.cameras[camera].publish_results(result)

    def _publish_diagnostics(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self.diagnostics_publisher.publish(DiagnosticArray(
            header=header, status=[camera.status() for camera in self.cameras]))

    def release(self) -> None:
        """Everything off: serving, outputs, the model."""
        self.stop_serving()
        self.close_outputs()
        self.core.release()


def camera_namespaces_problem(namespaces: list[str]) -> str | None:
    """Why these camera namespaces cannot be used (None: they can)."""
    if len(set(namespaces)) != len(namespaces):
        return f"each camera once, got {namespaces}"
    for namespace in namespaces:
        name = namespace.strip("/")
        if not name or not all(part.replace("_", "a").isalnum() and not part[0].isdigit()
                               for part in name.split("/")):
            return (f"{namespace!r} is not a ROS namespace (letters, digits and underscores, "
                    "not starting with a digit, separated by /)")
    return None


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


def run_node(make_node, arguments: list[str], ros_args=None, after_start=None) -> int:
    """Console-script body for either node: init, build, spin, clean up; the exit status.

    `arguments` is what to check for parameter files (sys.argv or the caller's args), ros_args
    what rclpy.init parses; after_start(node) runs once the node exists (autostart).
    """
    missing = missing_params_files(arguments)
    if missing:
        print(f"[FATAL] [{NODE_NAME}]: parameter file {missing[0]}: no such readable file",
              file=sys.stderr)
        return EXIT_USAGE
    node = None
    try:
        # rclpy.init chains its own handlers (which shut the context down) to these, so a
        # signal during start-up (weights, backend build) stops the node like Ctrl-C in spin.
        stop_signals.arm()
        rclpy.init(args=ros_args)
        node = make_node()
        if after_start is not None:
            after_start(node)
        rclpy.spin(node)
    except StartupError as error:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(error))
        return EXIT_USAGE
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:
        # The stop signal's KeyboardInterrupt, raised while native code was calling back into
        # Python (rclpy converting a large frame it took), comes out as that code's own error
        # (pybind11: "Unable to convert call argument"): still the stop that was asked for.
        if not stop_signals.stop_requested():
            raise
        rclpy.logging.get_logger(NODE_NAME).debug(f"stopped; the signal surfaced as {error!r}")
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
