"""rosbag2 bags of camera images, read and written without a ROS install.

The pure-Python ``rosbags`` library reads and writes both storages ROS 2 records (sqlite3 and
mcap) and (de)serialises messages with the ROS 2 Kilted type definitions, so nothing here
imports rclpy. Images are decoded with the same conversion code the node uses.

Every problem with a bag as a whole (missing, truncated, lacking the topic, a topic of an
unusable type) raises BagError with one line naming the bag and topic. A single unreadable
frame inside a good bag is not an error: it comes back as a CameraFrame with ``error`` set.
"""

from __future__ import annotations

import functools
import logging
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from fbsnet_ros.errors import UserError
from fbsnet_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    labels_to_mono8_fields,
    rgb_to_compressed_data,
    rgb_to_image_fields,
)
from fbsnet_ros.ros.names import (
    CAMERA_FRAME_ID,
    CAMERA_TOPIC,
    COMPRESSED_SUFFIX,
    GROUND_TRUTH_TOPIC,
)
from fbsnet_ros.ros.stamps import NANOSECONDS_PER_SECOND, ns_to_sec_nanosec, stamp_to_ns

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_MESSAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
# mcap is what `ros2 bag record` writes by default since Iron.
DEFAULT_STORAGE = "mcap"
# The rosbag2 metadata version Jazzy and Kilted write.
BAG_FORMAT_VERSION = 9

# Encodings bag-from-images writes: raw Image encodings and CompressedImage codecs.
RAW_ENCODINGS = ("rgb8", "bgr8")
COMPRESSED_ENCODINGS = ("jpeg", "png")

log = logging.getLogger(__name__)


class BagError(UserError, ValueError):
    """A bag that cannot be used as asked; the one-line message names the bag and topic."""


@functools.cache
def typestore():
    """Message definitions of the ROS 2 release this package is built against."""
    return get_typestore(Stores.ROS2_KILTED)


def ns_to_stamp(nanoseconds: int):
    seconds, nanosec = ns_to_sec_nanosec(nanoseconds)
    return typestore().types["builtin_interfaces/msg/Time"](sec=seconds, nanosec=nanosec)


def parse_start_time(text: str) -> int:
    """'1700000000.25' (seconds since the epoch) to nanoseconds, exactly."""
    try:
        nanoseconds = Decimal(text) * NANOSECONDS_PER_SECOND
    except InvalidOperation:
        raise ValueError(f"start time {text!r} is not a number of seconds") from None
    if nanoseconds < 0 or nanoseconds != nanoseconds.to_integral_value():
        raise ValueError(f"start time {text!r} must be >= 0 with at most 9 decimals")
    return int(nanoseconds)


def make_header(stamp_ns: int, frame_id: str):
    return typestore().types["std_msgs/msg/Header"](stamp=ns_to_stamp(stamp_ns),
                                                   frame_id=frame_id)


def storage_of(bag: str | Path) -> str:
    """'mcap' or 'sqlite3': the storage of an existing bag folder or file."""
    bag = Path(bag)
    files = [bag] if bag.is_file() else list(bag.iterdir())
    return "mcap" if any(".mcap" in path.name for path in files) else "sqlite3"


# --- reading --------------------------------------------------------------------------------

@contextmanager
def open_bag(bag: str | Path) -> Iterator[Reader]:
    """An open rosbags Reader for a bag folder (or a lone .db3/.mcap file)."""
    bag = Path(bag)
    if not bag.exists():
        raise BagError(f"{bag}: no such bag")
    try:
        reader = Reader(bag)
        reader.open()
    except (ReaderError, OSError, sqlite3.Error) as error:
        raise BagError(f"{bag}: not a readable rosbag2 bag ({_one_line(error)})") from None
    try:
        yield reader
    finally:
        reader.close()


def topic_connections(reader: Reader, bag: str | Path, topic: str,
                      message_types: Sequence[str]) -> list:
    """The reader's connections on `topic`, which must exist with one of `message_types`."""
    connections = [connection for connection in reader.connections if connection.topic == topic]
    if not connections:
        present = ", ".join(sorted({c.topic for c in reader.connections})) or "none"
        raise BagError(f"{bag}: topic {topic} is not in the bag (topics: {present})")
    for connection in connections:
        if connection.msgtype not in message_types:
            raise BagError(f"{bag}: topic {topic} has message type {connection.msgtype}; "
                           f"expected {' or '.join(message_types)}")
    return connections


def bag_messages(reader: Reader, bag: str | Path,
                 connections: Iterable) -> Iterator[tuple[object, int, memoryview]]:
    """(connection, log time ns, raw CDR) in bag order; a storage failure is a BagError."""
    messages = reader.messages(connections=list(connections))
    count = 0
    while True:
        try:
            connection, log_ns, raw = next(messages)
        except StopIteration:
            return
        except Exception as error:
            raise BagError(f"{bag}: bag is damaged or truncated after {count} messages "
                           f"({_one_line(error)})") from None
        count += 1
        yield connection, log_ns, raw


def deserialize(raw, message_type: str):
    """Raw CDR to a rosbags message; ValueError for bytes that are not that message."""
    try:
        return typestore().deserialize_cdr(raw, message_type)
    except Exception as error:
        raise ValueError(f"undecodable {message_type} ({type(error).__name__})") from None


def camera_message_to_rgb(message, message_type: str) -> np.ndarray:
    """A deserialised Image or CompressedImage as HxWx3 uint8 RGB, as the node decodes it."""
    if message_type == COMPRESSED_IMAGE_TYPE:
        return compressed_msg_to_rgb(message)
    return image_msg_to_rgb(message)


@dataclass
class CameraFrame:
    """One camera message of a bag, decoded, or with the reason it could not be."""

    index: int  # position on the topic, from 0
    log_ns: int  # the bag's receive time
    message_type: str
    header: object | None = None  # std_msgs/Header; None when the message did not deserialise
    encoding: str = ""  # Image.encoding, or CompressedImage.format
    rgb: np.ndarray | None = None  # HxWx3 uint8, read-only
    error: str | None = None

    @property
    def stamp_ns(self) -> int | None:
        return None if self.header is None else stamp_to_ns(self.header.stamp)


def decode_camera_frame(index: int, message_type: str, log_ns: int, raw) -> CameraFrame:
    """A camera message's raw CDR as a CameraFrame; problems go into `error`, never raise."""
    frame = CameraFrame(index=index, log_ns=log_ns, message_type=message_type)
    try:
        message = deserialize(raw, message_type)
        frame.header = message.header
        is_compressed = message_type == COMPRESSED_IMAGE_TYPE
        frame.encoding = message.format if is_compressed else message.encoding
        frame.rgb = camera_message_to_rgb(message, message_type)
    except (ValueError, ImageConversionError) as error:
        frame.error = str(error)
    return frame


def topic_message_count(reader: Reader, topic: str) -> int:
    return sum(c.msgcount for c in reader.connections if c.topic == topic)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text.rstrip(".") or type(error).__name__


# --- writing --------------------------------------------------------------------------------

class BagWriter:
    """Writes messages to a new bag; topics are added on first use. A context manager."""

    def __init__(self, bag: str | Path, storage: str = DEFAULT_STORAGE) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage '{storage}' not supported (choose {', '.join(STORAGES)})")
        self.bag = Path(bag)
        if self.bag.exists():
            raise BagError(f"{self.bag}: already exists; bags are never overwritten")
        self.storage = storage
        self._writer = Writer(self.bag, version=BAG_FORMAT_VERSION,
                              storage_plugin=STORAGES[storage])
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except (WriterError, OSError) as error:
            raise BagError(f"{self.bag}: cannot create bag ({_one_line(error)})") from None
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self._writer.close()
        # A command that failed half way leaves no half-written bag behind; an interrupted
        # recording (Ctrl-C) keeps what it has.
        if exc_type is not None and issubclass(exc_type, Exception):
            shutil.rmtree(self.bag, ignore_errors=True)

    def write_raw(self, topic: str, message_type: str, raw, log_ns: int) -> None:
        """Already serialised CDR bytes, e.g. straight from another bag or from DDS."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, message_type, typestore=typestore())
            self.counts[topic] = 0
        self._writer.write(self._connections[topic], int(log_ns), raw)
        self.counts[topic] += 1

    def write_image(self, topic: str, header, fields: dict, log_ns: int) -> None:
        """A sensor_msgs/Image from rgb_to_image_fields / labels_to_mono8_fields output."""
        message = typestore().types[IMAGE_TYPE](
            header=header, height=fields["height"], width=fields["width"],
            encoding=fields["encoding"], is_bigendian=int(fields["is_bigendian"]),
            step=fields["step"], data=np.frombuffer(fields["data"], dtype=np.uint8))
        self.write_raw(topic, IMAGE_TYPE, typestore().serialize_cdr(message, IMAGE_TYPE), log_ns)

    def write_compressed(self, topic: str, header, codec: str, data: bytes,
                         log_ns: int) -> None:
        # image_transport's format string: the camera's encoding, then what the codec holds.
        message = typestore().types[COMPRESSED_IMAGE_TYPE](
            header=header, format=f"rgb8; {codec} compressed bgr8",
            data=np.frombuffer(data, dtype=np.uint8))
        raw = typestore().serialize_cdr(message, COMPRESSED_IMAGE_TYPE)
        self.write_raw(topic, COMPRESSED_IMAGE_TYPE, raw, log_ns)


# --- bag-from-images ------------------------------------------------------------------------

def camera_topic_for(encoding: str, base_topic: str = CAMERA_TOPIC) -> str:
    return base_topic + COMPRESSED_SUFFIX if encoding in COMPRESSED_ENCODINGS else base_topic


def images_to_bag(images: str | Path, out: str | Path, rate: float, *,
                  labels: str | Path | None = None, gt_dir: str | Path | None = None,
                  encoding: str = "rgb8", storage: str = DEFAULT_STORAGE,
                  start_ns: int = 0, frame_id: str = CAMERA_FRAME_ID) -> dict:
    """Write a folder of frames (name order) as a camera bag; returns a summary.

    Frame i is stamped start_ns + i/rate (header stamp and log time alike). With `labels`, the
    label PNG of the same name goes on GROUND_TRUTH_TOPIC as mono8 with the frame's header, and
    into `gt_dir` as <stamp_ns>.png, the folder layout bag-eval's --gt-dir reads.
    A frame or label that cannot be read is logged, left out and counted under "failed"; the
    frame's stamp stays unused. Existing files in `gt_dir` are never replaced.
    """
    import cv2

    from fbsnet_ros.data.frame_sources import image_paths
    from fbsnet_ros.data.io import DatasetError, check_same_size, read_label, read_rgb

    if not rate > 0:
        raise ValueError(f"rate must be > 0 Hz, got {rate}")
    if encoding not in RAW_ENCODINGS + COMPRESSED_ENCODINGS:
        raise ValueError(f"encoding '{encoding}' not supported "
                         f"(choose {', '.join(RAW_ENCODINGS + COMPRESSED_ENCODINGS)})")
    frame_paths = image_paths(images)
    label_paths = _matching_labels(frame_paths, labels) if labels is not None else {}
    # Frame i keeps its slot (stamp) even when it cannot be read: a gap, like a dropped frame.
    stamps = {path: start_ns + round(index * NANOSECONDS_PER_SECOND / rate)
              for index, path in enumerate(frame_paths)}
    if gt_dir is not None and label_paths:
        _refuse_existing_ground_truth(Path(gt_dir), [stamps[path] for path in label_paths])
    camera_topic = camera_topic_for(encoding)
    written, labels_written, failed = 0, 0, Counter()
    with BagWriter(out, storage) as writer:
        if gt_dir is not None and label_paths:
            Path(gt_dir).mkdir(parents=True, exist_ok=True)
        for frame_path in frame_paths:
            stamp_ns = stamps[frame_path]
            header = make_header(stamp_ns, frame_id)
            try:
                rgb = read_rgb(frame_path)
            except DatasetError as error:
                _count_failure(failed, frame_path, error, "frame left out")
                continue
            if encoding in COMPRESSED_ENCODINGS:
                writer.write_compressed(camera_topic, header, encoding,
                                        rgb_to_compressed_data(rgb, encoding), stamp_ns)
            else:
                writer.write_image(camera_topic, header, rgb_to_image_fields(rgb, encoding),
                                   stamp_ns)
            written += 1
            label_path = label_paths.get(frame_path)
            if label_path is None:
                continue
            try:
                label = read_label(label_path)
                check_same_size(rgb, label, frame_path, label_path)
            except DatasetError as error:
                _count_failure(failed, label_path, error, "frame written without its label")
                continue
            writer.write_image(GROUND_TRUTH_TOPIC, header, labels_to_mono8_fields(label),
                               stamp_ns)
            labels_written += 1
            if gt_dir is not None:
                cv2.imwrite(str(Path(gt_dir) / f"{stamp_ns}.png"), label)
        if not written:
            raise DatasetError(f"{images}: none of the {len(frame_paths)} frames could be read")
    return {"bag": str(out), "storage": storage, "camera_topic": camera_topic,
            "frames": written, "labels": labels_written,
            "ground_truth_topic": GROUND_TRUTH_TOPIC if labels_written else None,
            "gt_dir": str(gt_dir) if gt_dir is not None and labels_written else None,
            "first_stamp_ns": start_ns, "rate_hz": rate, "failed": dict(failed)}


def _count_failure(failed: Counter, path: Path, error: Exception, consequence: str) -> None:
    """One warning line naming the file; the summary counts the reason without the path."""
    reason = str(error).removeprefix(f"{path}: ")
    log.warning("%s: %s; %s", path, reason, consequence)
    failed[reason] += 1


def _refuse_existing_ground_truth(gt_dir: Path, stamps: Sequence[int]) -> None:
    """Ground-truth PNGs are never written over files already there."""
    from fbsnet_ros.data.io import DatasetError

    existing = [gt_dir / f"{stamp}.png" for stamp in stamps if (gt_dir / f"{stamp}.png").exists()]
    if existing:
        raise DatasetError(f"{gt_dir}: {len(existing)} ground-truth file(s) already there "
                           f"(e.g. {existing[0].name}); give another --gt-dir or --start-time")


def _matching_labels(frame_paths: Sequence[Path], labels: str | Path) -> dict[Path, Path]:
    """Each frame's label: the PNG of the same stem in the labels folder, where there is one."""
    from fbsnet_ros.data.io import DatasetError

    labels = Path(labels)
    if not labels.is_dir():
        raise DatasetError(f"{labels}: not a folder of label PNGs")
    matched = {path: labels / f"{path.stem}.png" for path in frame_paths}
    matched = {frame: label for frame, label in matched.items() if label.is_file()}
    if not matched:
        raise DatasetError(f"{labels}: no label PNG is named like a frame "
                           f"(e.g. {frame_paths[0].stem}.png)")
    return matched
