"""Tests for fbsnet_ros.ros.image_conversion on plain message stand-ins (no ROS needed)."""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from fbsnet_ros.ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    labels_to_mono8_fields,
    output_encoding_for,
    rgb_to_compressed_data,
    rgb_to_image_fields,
)

FLAT_RGB = (200, 100, 50)
CHANNEL_INDEX = {"r": 0, "g": 1, "b": 2}


@dataclass
class ImageMsg:
    """The fields of sensor_msgs/Image that the conversion reads."""

    height: int
    width: int
    encoding: str
    step: int
    data: Any
    is_bigendian: int = 0


@dataclass
class CompressedImageMsg:
    """The fields of sensor_msgs/CompressedImage that the conversion reads."""

    format: str
    data: Any


def _random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _message_from(rows: np.ndarray, encoding: str, padding: int = 0) -> ImageMsg:
    """Pack a height x width x channels array as a message, adding padding bytes per row."""
    height, width = rows.shape[:2]
    row_bytes = rows.reshape(height, -1).view(np.uint8)
    padded = np.full((height, row_bytes.shape[1] + padding), 0xEE, dtype=np.uint8)
    padded[:, : row_bytes.shape[1]] = row_bytes
    return ImageMsg(height, width, encoding, padded.shape[1], padded.tobytes())


def _bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image through the ROS pattern's 2x2 tile, e.g. 'rggb' = R G / G B."""
    tile = [[CHANNEL_INDEX[pattern[0]], CHANNEL_INDEX[pattern[1]]],
            [CHANNEL_INDEX[pattern[2]], CHANNEL_INDEX[pattern[3]]]]
    rows, cols = np.indices(rgb.shape[:2])
    channel = np.array(tile)[rows % 2, cols % 2]
    return np.take_along_axis(rgb, channel[..., None], axis=2)[..., 0]


def _bt601_ycbcr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Studio-swing BT.601 Y, Cb, Cr, the standard that OpenCV's YUV422 decoders assume."""
    red, green, blue = rgb
    luma = 16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255
    blue_diff = 128 + (-37.797 * red - 74.203 * green + 112.0 * blue) / 255
    red_diff = 128 + (112.0 * red - 93.786 * green - 18.214 * blue) / 255
    return round(luma), round(blue_diff), round(red_diff)


# --- every supported encoding ------------------------------------------------------------


def test_supported_encodings_are_the_documented_ones():
    assert set(SUPPORTED_ENCODINGS) == {
        "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16",
        "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
        "yuv422", "yuv422_yuy2",
    }


@pytest.mark.parametrize("padding", [0, 7])
@pytest.mark.parametrize(
    "encoding, channel_order",
    [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2, 3]), ("bgra8", [2, 1, 0, 3])],
)
def test_colour_encodings_give_rgb(encoding, channel_order, padding):
    rgb = _random_rgb(5, 6)
    with_alpha = np.concatenate([rgb, np.full((5, 6, 1), 9, np.uint8)], axis=2)
    msg = _message_from(with_alpha[..., channel_order], encoding, padding)

    result = image_msg_to_rgb(msg)

    assert result.shape == (5, 6, 3) and result.dtype == np.uint8
    np.testing.assert_array_equal(result, rgb)


@pytest.mark.parametrize("padding", [0, 7])
def test_mono8_is_replicated_to_three_channels(padding):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    result = image_msg_to_rgb(_message_from(grey, "mono8", padding))
    np.testing.assert_array_equal(result, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_mono16_scales_like_cv_bridge_in_either_byte_order(byte_order):
    grey16 = np.array([[0, 257, 257 * 7], [257 * 128, 65535, 128]], dtype=f"{byte_order}u2")
    msg = _message_from(grey16, "mono16", padding=3)
    msg.is_bigendian = int(byte_order == ">")

    result = image_msg_to_rgb(msg)

    # 257 * k scales to exactly k; 128 / 257 rounds down to 0.
    expected_grey = np.array([[0, 1, 7], [128, 255, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(result, np.repeat(expected_grey[..., None], 3, axis=2))


def test_mono16_big_and_little_endian_agree():
    grey16 = np.random.default_rng(1).integers(0, 65536, (6, 9)).astype(np.uint16)
    little = _message_from(grey16.astype("<u2"), "mono16")
    big = _message_from(grey16.astype(">u2"), "mono16")
    big.is_bigendian = 1
    assert little.data != big.data
    np.testing.assert_array_equal(image_msg_to_rgb(little), image_msg_to_rgb(big))


@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern, padding):
    flat = np.empty((8, 10, 3), dtype=np.uint8)
    flat[:] = FLAT_RGB
    msg = _message_from(_bayer_mosaic(flat, pattern), f"bayer_{pattern}8", padding)

    result = image_msg_to_rgb(msg)

    assert result.shape == (8, 10, 3)
    interior = result[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(interior - FLAT_RGB).max() <= 2


@pytest.mark.parametrize(
    "encoding, pair_layout",
    [("yuv422", "uyvy"), ("yuv422_yuy2", "yuyv")],
)
def test_yuv422_byte_orders_decode_a_known_colour(encoding, pair_layout):
    luma, blue_diff, red_diff = _bt601_ycbcr(FLAT_RGB)
    sample = {"y": luma, "u": blue_diff, "v": red_diff}
    pixel_pair = [sample[letter] for letter in pair_layout]
    width = 6
    row = np.array(pixel_pair * (width // 2), dtype=np.uint8)
    packed = np.tile(row, (3, 1)).reshape(3, width, 2)

    result = image_msg_to_rgb(_message_from(packed, encoding, padding=4))

    assert result.shape == (3, width, 3)
    assert np.abs(result.reshape(-1, 3).astype(int) - FLAT_RGB).max() <= 2


# Bayer images below 3x3 are refused instead: see test_bayer_needs_three_by_three.
ODD_SIZE_CASES = [
    (encoding, height, width)
    for encoding in ("rgb8", "bgr8", "mono8", "mono16", "bayer_rggb8")
    for height, width in ((1, 1), (7, 3), (3, 7))
    if not (encoding.startswith("bayer") and min(height, width) < 3)
]


@pytest.mark.parametrize("encoding, height, width", ODD_SIZE_CASES)
def test_odd_sizes_convert(encoding, height, width):
    grey16 = np.full((height, width), 257 * 90, dtype=np.uint16)
    sources = {
        "rgb8": np.full((height, width, 3), 90, np.uint8),
        "bgr8": np.full((height, width, 3), 90, np.uint8),
        "mono8": np.full((height, width), 90, np.uint8),
        "mono16": grey16.astype("<u2"),
        "bayer_rggb8": np.full((height, width), 90, np.uint8),
    }
    result = image_msg_to_rgb(_message_from(sources[encoding], encoding, padding=1))
    assert result.shape == (height, width, 3)
    np.testing.assert_array_equal(result, np.full((height, width, 3), 90, np.uint8))


# --- zero copy ---------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 7])
@pytest.mark.parametrize(
    "container",
    [bytes, lambda raw: np.frombuffer(raw, np.uint8), lambda raw: array.array("B", raw)],
    ids=["bytes", "numpy", "array"],
)
def test_rgb8_is_a_view_of_the_message_buffer(container, padding):
    rgb = _random_rgb(4, 5)
    msg = _message_from(rgb, "rgb8", padding)
    msg.data = container(msg.data)

    result = image_msg_to_rgb(msg)

    assert np.shares_memory(result, np.frombuffer(msg.data, dtype=np.uint8))
    np.testing.assert_array_equal(result, rgb)


def test_rosbags_style_numpy_data_stays_shared():
    rgb = _random_rgb(3, 4)
    msg = _message_from(rgb, "rgb8")
    msg.data = np.frombuffer(msg.data, dtype=np.uint8).copy()
    assert np.shares_memory(image_msg_to_rgb(msg), msg.data)


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_round_trip(encoding):
    rgb = _random_rgb(6, 7, seed=2)
    fields = rgb_to_image_fields(rgb, encoding)

    assert fields["encoding"] == encoding
    assert (fields["height"], fields["width"]) == (6, 7)
    assert fields["step"] == 7 * (4 if encoding.endswith("a8") else 3)
    assert isinstance(fields["data"], bytes)
    np.testing.assert_array_equal(image_msg_to_rgb(ImageMsg(**fields)), rgb)


def test_bgr8_fields_hold_bgr_bytes():
    fields = rgb_to_image_fields(np.array([[[1, 2, 3]]], np.uint8), "bgr8")
    assert fields["data"] == bytes([3, 2, 1])


@pytest.mark.parametrize(
    "encoding, dtype, value", [("mono8", np.uint8, 77), ("mono16", np.uint16, 257 * 77)]
)
def test_mono_round_trip(encoding, dtype, value):
    grey = np.full((3, 5), value, dtype=dtype)
    fields = rgb_to_image_fields(grey, encoding)

    assert fields["step"] == 5 * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(image_msg_to_rgb(ImageMsg(**fields)), np.full((3, 5, 3), 77))


def test_labels_become_mono8_fields():
    labels = np.array([[0, 1], [18, 255]], dtype=np.int64)
    fields = labels_to_mono8_fields(labels)
    assert fields["encoding"] == "mono8"
    assert fields["data"] == bytes([0, 1, 18, 255])


def test_real_sensor_msgs_image_round_trip():
    image_module = pytest.importorskip("sensor_msgs.msg")
    rgb = _random_rgb(4, 6, seed=3)
    msg = image_module.Image(**rgb_to_image_fields(rgb, "bgr8"))

    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)

    msg.encoding, msg.step, msg.data = "rgb8", 18, rgb.tobytes()
    result = image_msg_to_rgb(msg)
    np.testing.assert_array_equal(result, rgb)
    assert np.shares_memory(result, np.frombuffer(msg.data, dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_real_sensor_msgs_compressed_image(fmt):
    image_module = pytest.importorskip("sensor_msgs.msg")
    flat = np.full((8, 8, 3), FLAT_RGB, dtype=np.uint8)
    msg = image_module.CompressedImage(format=fmt, data=rgb_to_compressed_data(flat, fmt))
    assert np.abs(compressed_msg_to_rgb(msg).astype(int) - FLAT_RGB).max() <= 3


# --- compressed images -------------------------------------------------------------------


def test_png_round_trip_is_exact():
    rgb = _random_rgb(9, 11, seed=4)
    data = rgb_to_compressed_data(rgb, "png")
    assert data.startswith(b"\x89PNG")
    msg = CompressedImageMsg("bgr8; png compressed bgr8", np.frombuffer(data, np.uint8))
    np.testing.assert_array_equal(compressed_msg_to_rgb(msg), rgb)


@pytest.mark.parametrize("compressed_format", ["jpeg", "rgb8; jpeg compressed bgr8"])
def test_jpeg_round_trip_keeps_colours(compressed_format):
    rgb = np.zeros((16, 32, 3), dtype=np.uint8)
    rgb[:, :16] = FLAT_RGB
    rgb[:, 16:] = (20, 40, 220)
    data = rgb_to_compressed_data(rgb, "jpeg")
    assert data.startswith(b"\xff\xd8")

    result = compressed_msg_to_rgb(CompressedImageMsg(compressed_format, data))

    assert result.shape == (16, 32, 3)
    assert np.abs(result[4:-4, 2:12].astype(int) - FLAT_RGB).max() <= 6
    assert np.abs(result[4:-4, 20:30].astype(int) - (20, 40, 220)).max() <= 6


def test_compressed_max_pixels():
    data = rgb_to_compressed_data(_random_rgb(10, 20), "png")
    with pytest.raises(ImageConversionError, match=r"image 10x20 has 200 pixels, above .* 199"):
        compressed_msg_to_rgb(CompressedImageMsg("png", data), max_pixels=199)
    at_the_limit = compressed_msg_to_rgb(CompressedImageMsg("png", data), max_pixels=200)
    assert at_the_limit.shape == (10, 20, 3)


@pytest.mark.parametrize(
    "compressed_format, data, expected",
    [
        ("jpeg", b"\xff\xd8" + bytes(1232), "could not decode 1234 bytes of jpeg data"),
        ("bgr8; png compressed bgr8", b"not a png", "could not decode 9 bytes of png data"),
        ("jpeg", b"", "could not decode 0 bytes of jpeg data"),
        ("16UC1; compressedDepth png", b"\x00" * 20, "compressed depth image"),
    ],
)
def test_undecodable_compressed_data(compressed_format, data, expected):
    with pytest.raises(ImageConversionError, match=expected):
        compressed_msg_to_rgb(CompressedImageMsg(compressed_format, data))


def test_unknown_compressed_output_format():
    with pytest.raises(ImageConversionError, match="compressed format 'webp' not supported"):
        rgb_to_compressed_data(_random_rgb(2, 2), "webp")


# --- errors ------------------------------------------------------------------------------


def test_unsupported_encoding_lists_the_supported_ones():
    msg = ImageMsg(2, 2, "xyz", 6, bytes(12))
    with pytest.raises(ImageConversionError) as raised:
        image_msg_to_rgb(msg)
    message = str(raised.value)
    assert message.startswith("encoding 'xyz' not supported (supported: rgb8, bgr8,")
    assert all(encoding in message for encoding in SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_encodings_are_refused(encoding):
    expected = f"{encoding} depth images are not camera images"
    with pytest.raises(ImageConversionError, match=expected):
        image_msg_to_rgb(ImageMsg(2, 2, encoding, 8, bytes(16)))


def test_short_data():
    msg = ImageMsg(360, 480, "rgb8", 1440, bytes(1000))
    with pytest.raises(ImageConversionError) as raised:
        image_msg_to_rgb(msg)
    assert str(raised.value) == (
        "data has 1000 bytes, expected 518400 for 360x480 rgb8 with step 1440"
    )


def test_long_data_is_refused_like_cv_bridge():
    with pytest.raises(ImageConversionError, match="data has 13 bytes, expected 12"):
        image_msg_to_rgb(ImageMsg(2, 2, "rgb8", 6, bytes(13)))


def test_step_smaller_than_a_row():
    msg = ImageMsg(360, 480, "rgb8", 100, bytes(36000))
    with pytest.raises(ImageConversionError) as raised:
        image_msg_to_rgb(msg)
    assert str(raised.value) == (
        "step 100 is smaller than width x bytes per pixel (480 x 3 = 1440)"
    )


@pytest.mark.parametrize("height, width", [(0, 480), (480, 0)])
def test_zero_sized_image(height, width):
    msg = ImageMsg(height, width, "rgb8", width * 3, b"")
    with pytest.raises(ImageConversionError, match=rf"zero width or height \({height}x{width}\)"):
        image_msg_to_rgb(msg)


def test_max_pixels_is_checked_before_the_data():
    msg = ImageMsg(8000, 8000, "rgb8", 24000, b"")
    with pytest.raises(ImageConversionError) as raised:
        image_msg_to_rgb(msg, max_pixels=1_000_000)
    assert str(raised.value) == (
        "image 8000x8000 has 64000000 pixels, above the limit of 1000000 (parameter max_pixels)"
    )


def test_max_pixels_allows_images_at_the_limit():
    rgb = _random_rgb(10, 10)
    np.testing.assert_array_equal(image_msg_to_rgb(_message_from(rgb, "rgb8"), max_pixels=100), rgb)


@pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (2, 8), (8, 2)])
def test_bayer_needs_three_by_three(height, width):
    msg = ImageMsg(height, width, "bayer_grbg8", width, bytes(height * width))
    with pytest.raises(
        ImageConversionError, match=f"bayer_grbg8 needs at least 3x3 pixels .* got {height}x{width}"
    ):
        image_msg_to_rgb(msg)


def test_yuv422_needs_an_even_width():
    with pytest.raises(ImageConversionError, match=r"yuv422 needs an even width.*got width 7"):
        image_msg_to_rgb(ImageMsg(2, 7, "yuv422", 14, bytes(28)))


@pytest.mark.parametrize(
    "image, encoding, expected",
    [
        (np.zeros((2, 2), np.uint8), "rgb8", r"rgb8 needs a height x width x 3 uint8 array"),
        (np.zeros((2, 2, 3), np.float32), "bgr8", r"got shape \(2, 2, 3\) float32"),
        (np.zeros((2, 2, 3), np.uint8), "mono8", r"mono8 needs a height x width uint8 array"),
        (np.zeros((2, 2), np.uint8), "16UC1", r"cannot write encoding '16UC1'"),
    ],
)
def test_rgb_to_image_fields_rejects_mismatched_arrays(image, encoding, expected):
    with pytest.raises(ImageConversionError, match=expected):
        rgb_to_image_fields(image, encoding)


def test_labels_out_of_mono8_range():
    with pytest.raises(ImageConversionError, match=r"labels range 0\.\.300 does not fit"):
        labels_to_mono8_fields(np.array([[0, 300]]))


# --- overlay encoding --------------------------------------------------------------------


@pytest.mark.parametrize(
    "input_encoding, expected",
    [("bgr8", "bgr8"), ("bgra8", "bgr8"), ("rgb8", "rgb8"), ("mono8", "rgb8"),
     ("bayer_rggb8", "rgb8"), ("yuv422", "rgb8")],
)
def test_overlay_mirrors_the_camera_channel_order(input_encoding, expected):
    assert output_encoding_for(input_encoding) == expected
