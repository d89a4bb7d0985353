"""Conversion between ROS image messages and NumPy arrays, with cv_bridge semantics.

Shared by the live node and the offline rosbag tools, so it never imports rclpy or
sensor_msgs: any object with the fields of sensor_msgs/Image (height, width, encoding,
is_bigendian, step, data) or sensor_msgs/CompressedImage (format, data) will do. ``data``
may be bytes, rclpy's array.array or the uint8 NumPy array that the ``rosbags`` library
gives.

Images come out as height x width x 3 uint8 RGB, whatever the camera's encoding.
Where the layout allows (rgb8, with or without row padding) the result is a view into the
message's buffer rather than a copy: it may be read-only, and callers must not write into
it. Sizes in messages are written height x width, the order of the array's shape.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

# Bytes per pixel of every encoding we can turn into RGB; the keys are SUPPORTED_ENCODINGS.
_BYTES_PER_PIXEL = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    "bayer_rggb8": 1,
    "bayer_bggr8": 1,
    "bayer_gbrg8": 1,
    "bayer_grbg8": 1,
    "yuv422": 2,
    "yuv422_yuy2": 2,
}
SUPPORTED_ENCODINGS = tuple(_BYTES_PER_PIXEL)

# OpenCV names a Bayer pattern by the second and third pixels of its second row, ROS by the
# top-left 2x2 tile, so ROS "rggb" is OpenCV "BG". These are cv_bridge's getConversionCodes.
# ROS "yuv422" is UYVY byte order and "yuv422_yuy2" is YUYV, also as in cv_bridge.
_TO_RGB_CODES = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}

# OpenCV's demosaicing leaves images narrower or shorter than this all black.
_MIN_BAYER_SIDE = 3

# Single-channel 16-bit and float images on camera topics are depth maps (REP 118).
_DEPTH_ENCODINGS = ("16UC1", "32FC1")

# cv_bridge's mono16 -> 8-bit scaling (convertTo with 255/65535, rounded): 257 * k maps to k.
# A plain >> 8 would differ from cv_bridge by one grey level on about a quarter of values.
_MONO16_TO_MONO8_SCALE = 255.0 / 65535.0

# RGB -> channel order of each encoding rgb_to_image_fields writes; None keeps RGB as is.
_FROM_RGB_CODES = {
    "rgb8": None,
    "bgr8": cv2.COLOR_RGB2BGR,
    "rgba8": cv2.COLOR_RGB2RGBA,
    "bgra8": cv2.COLOR_RGB2BGRA,
}
_MONO_DTYPES = {"mono8": np.uint8, "mono16": np.uint16}

_IMAGE_FILE_EXTENSIONS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}


class ImageConversionError(ValueError):
    """A message that cannot be turned into an image, or an image that cannot be encoded."""


def image_msg_to_rgb(msg, max_pixels: int | None = None) -> np.ndarray:
    """Return a sensor_msgs/Image as a height x width x 3 uint8 RGB array.

    The result may share (read-only) memory with ``msg.data``; copy it before writing.
    mono8 and mono16 come out as grey in all three channels, mono16 scaled to 8 bits as
    cv_bridge does. Raises ImageConversionError for malformed or unsupported messages, and
    for images with more than ``max_pixels`` pixels when a limit is given.
    """
    encoding = msg.encoding
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    bytes_per_pixel = _bytes_per_pixel(encoding)
    _check_dimensions(height, width, max_pixels)
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width x bytes per pixel "
            f"({width} x {bytes_per_pixel} = {row_bytes})"
        )
    byte_buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if byte_buffer.size != height * step:
        raise ImageConversionError(
            f"data has {byte_buffer.size} bytes, expected {height * step} "
            f"for {height}x{width} {encoding} with step {step}"
        )
    if encoding.startswith("yuv422") and width % 2:
        raise ImageConversionError(
            f"{encoding} needs an even width (pixel pairs share chroma), got width {width}"
        )
    if encoding.startswith("bayer") and min(height, width) < _MIN_BAYER_SIDE:
        raise ImageConversionError(
            f"{encoding} needs at least {_MIN_BAYER_SIDE}x{_MIN_BAYER_SIDE} pixels to "
            f"demosaic, got {height}x{width}"
        )

    if encoding == "mono16":
        grey = _mono16_to_mono8(byte_buffer, height, width, step, bool(msg.is_bigendian))
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    # Slicing off the row padding keeps a view: OpenCV and NumPy both accept strided rows.
    pixels = byte_buffer.reshape(height, step)[:, :row_bytes]
    if bytes_per_pixel > 1:
        pixels = pixels.reshape(height, width, bytes_per_pixel)
    if encoding == "rgb8":
        return pixels
    return cv2.cvtColor(pixels, _TO_RGB_CODES[encoding])


def compressed_msg_to_rgb(msg, max_pixels: int | None = None) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to height x width x 3 uint8 RGB.

    image_transport always hands the encoder BGR ("... compressed bgr8"), which is what
    OpenCV expects, so the decoded image needs only OpenCV's BGR -> RGB swap. ``max_pixels``
    is checked after decoding; OpenCV's own OPENCV_IO_MAX_IMAGE_PIXELS bounds the decoder.
    """
    compressed_format = msg.format
    if "compresseddepth" in compressed_format.lower():
        raise ImageConversionError(
            f"'{compressed_format}' is a compressed depth image, not a camera image"
        )
    compressed_bytes = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(compressed_bytes, cv2.IMREAD_COLOR) if compressed_bytes.size else None
    if bgr is None:
        raise ImageConversionError(
            f"could not decode {compressed_bytes.size} bytes of "
            f"{_codec_name(compressed_format)} data"
        )
    _check_dimensions(bgr.shape[0], bgr.shape[1], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_fields(rgb_or_mono: np.ndarray, encoding: str) -> dict:
    """Return the sensor_msgs/Image fields (all but header) holding an image.

    rgb8, bgr8, rgba8 and bgra8 take a height x width x 3 uint8 RGB array (alpha is set
    opaque); mono8 takes a height x width uint8 array and mono16 a uint16 one. Rows are
    unpadded and multi-byte values keep this machine's byte order.
    """
    image = np.asarray(rgb_or_mono)
    if encoding in _FROM_RGB_CODES:
        _check_array(image, encoding, expected_ndim=3, expected_dtype=np.uint8)
        code = _FROM_RGB_CODES[encoding]
        pixels = image if code is None else cv2.cvtColor(image, code)
    elif encoding in _MONO_DTYPES:
        _check_array(image, encoding, expected_ndim=2, expected_dtype=_MONO_DTYPES[encoding])
        pixels = image
    else:
        writable = ", ".join((*_FROM_RGB_CODES, *_MONO_DTYPES))
        raise ImageConversionError(f"cannot write encoding '{encoding}' (supported: {writable})")
    rows = np.ascontiguousarray(pixels)
    return {
        "height": rows.shape[0],
        "width": rows.shape[1],
        "encoding": encoding,
        "is_bigendian": sys.byteorder == "big",
        "step": rows.strides[0],
        "data": rows.tobytes(),
    }


def labels_to_mono8_fields(labels: np.ndarray) -> dict:
    """Return Image fields for a height x width map of class ids (0-255) as mono8."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint8).max):
        raise ImageConversionError(
            f"labels range {labels.min()}..{labels.max()} does not fit in mono8 (0..255)"
        )
    return rgb_to_image_fields(labels.astype(np.uint8, copy=False), "mono8")


def rgb_to_compressed_data(rgb: np.ndarray, fmt: str) -> bytes:
    """Encode a height x width x 3 uint8 RGB array as ``fmt`` ("jpeg" or "png") bytes."""
    extension = _IMAGE_FILE_EXTENSIONS.get(fmt.lower())
    if extension is None:
        raise ImageConversionError(f"compressed format '{fmt}' not supported (jpeg, png)")
    image = np.asarray(rgb)
    _check_array(image, "RGB", expected_ndim=3, expected_dtype=np.uint8)
    encoded, compressed = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise ImageConversionError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return compressed.tobytes()


def output_encoding_for(input_encoding: str) -> str:
    """Encoding for overlays: keep the camera's BGR order if it had one, otherwise rgb8."""
    return "bgr8" if input_encoding in ("bgr8", "bgra8") else "rgb8"


def _bytes_per_pixel(encoding: str) -> int:
    if encoding in _DEPTH_ENCODINGS:
        raise ImageConversionError(f"{encoding} depth images are not camera images")
    if encoding not in _BYTES_PER_PIXEL:
        raise ImageConversionError(
            f"encoding '{encoding}' not supported (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    return _BYTES_PER_PIXEL[encoding]


def _check_dimensions(height: int, width: int, max_pixels: int | None) -> None:
    if height == 0 or width == 0:
        raise ImageConversionError(f"image has zero width or height ({height}x{width})")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(
            f"image {height}x{width} has {height * width} pixels, above the limit of "
            f"{max_pixels} (parameter max_pixels)"
        )


def _mono16_to_mono8(
    byte_buffer: np.ndarray, height: int, width: int, step: int, is_bigendian: bool
) -> np.ndarray:
    # Viewing with the message's byte order, then copying to native uint16, byte-swaps exactly
    # when the two differ. The copy is needed anyway: OpenCV misreads rows whose step is not a
    # multiple of 2 bytes. np.ndarray with strides (not .view on padded rows) works on NumPy 1.
    message_dtype = np.dtype(">u2" if is_bigendian else "<u2")
    grey16 = np.ndarray((height, width), dtype=message_dtype, buffer=byte_buffer, strides=(step, 2))
    native_grey16 = np.ascontiguousarray(grey16, dtype=np.uint16)
    return cv2.convertScaleAbs(native_grey16, alpha=_MONO16_TO_MONO8_SCALE)


def _codec_name(compressed_format: str) -> str:
    """'bgr8; jpeg compressed bgr8' -> 'jpeg'; anything unrecognised is named as given."""
    lowered = compressed_format.lower()
    if "png" in lowered:
        return "png"
    if "jpeg" in lowered or "jpg" in lowered:
        return "jpeg"
    return compressed_format or "compressed"


def _check_array(image: np.ndarray, what: str, expected_ndim: int, expected_dtype) -> None:
    expected_shape = "height x width x 3" if expected_ndim == 3 else "height x width"
    channels_ok = expected_ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    if image.ndim != expected_ndim or not channels_ok or image.dtype != expected_dtype:
        raise ImageConversionError(
            f"{what} needs a {expected_shape} {np.dtype(expected_dtype).name} array, "
            f"got shape {image.shape} {image.dtype}"
        )
