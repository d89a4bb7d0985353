"""Camera-like frame sources for demos and tests: a synthetic road scene, folders, videos."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from fbsnet_ros.data.io import IMAGE_SUFFIXES, DatasetError, read_rgb

# Containers OpenCV's FFmpeg backend reads; `predict` takes a file with one of these as a video.
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v"}


def synthetic_road_scene(frame_index: int, size: tuple[int, int] = (360, 480)) -> np.ndarray:
    """A driving scene drawn with OpenCV (like image_tools' burger mode): sky, buildings,
    trees, road with moving lane marks and a car crossing, as HxWx3 uint8 RGB."""
    height, width = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    horizon = int(0.45 * height)
    sky_shade = np.linspace(235, 150, horizon, dtype=np.float32)[:, None]
    sky = np.stack([sky_shade * 0.65, sky_shade * 0.8, sky_shade], axis=-1)
    frame[:horizon] = sky.astype(np.uint8)
    frame[horizon:] = (110, 110, 105)

    rng = np.random.default_rng(7)  # the same skyline in every frame
    x = 0
    while x < width:
        building_w = int(rng.integers(width // 12, width // 5))
        top = int(rng.integers(int(0.12 * height), horizon - 10))
        shade = int(rng.integers(90, 170))
        colour = (shade, shade - 20, shade - 35)
        cv2.rectangle(frame, (x, top), (x + building_w, horizon + 12), colour, -1)
        x += building_w + int(rng.integers(2, 10))
    for tree_x in range(width // 10, width, width // 4):
        cv2.circle(frame, (tree_x, horizon - 5), height // 12, (40, 110, 35), -1)

    road = np.array([[0, height], [int(0.42 * width), horizon], [int(0.58 * width), horizon],
                     [width, height]], dtype=np.int32)
    cv2.fillPoly(frame, [road], (80, 80, 85))
    cv2.fillPoly(frame, [np.array([[0, height], [int(0.42 * width), horizon], [0, horizon + 20]],
                                  dtype=np.int32)], (150, 140, 120))  # pavement
    for step in range(8):
        depth = ((step + frame_index * 0.15) % 8) / 8.0  # marks flow towards the camera
        y = int(horizon + (height - horizon) * depth**1.6)
        mark_h = max(2, int(0.04 * height * depth))
        cv2.rectangle(frame, (width // 2 - 1 - int(4 * depth), y),
                      (width // 2 + 1 + int(4 * depth), min(height - 1, y + mark_h)),
                      (235, 235, 225), -1)

    car_x = int((frame_index * width / 60) % (width + width // 4)) - width // 8
    car_y = int(horizon + 0.22 * (height - horizon))
    car_w, car_h = width // 6, height // 10
    cv2.rectangle(frame, (car_x, car_y), (car_x + car_w, car_y + car_h), (150, 20, 30), -1)
    cv2.rectangle(frame, (car_x + car_w // 5, car_y - car_h // 2),
                  (car_x + 4 * car_w // 5, car_y), (120, 15, 25), -1)
    for wheel_x in (car_x + car_w // 5, car_x + 4 * car_w // 5):
        cv2.circle(frame, (wheel_x, car_y + car_h), car_h // 3, (20, 20, 20), -1)
    return frame


def image_paths(folder: str | Path) -> list[Path]:
    """The images of a folder in name order (a sequence's frame order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DatasetError(f"{folder}: no .png/.jpg/.jpeg/.bmp images")
    return paths


def image_folder_frames(folder: str | Path) -> Iterator[np.ndarray]:
    for path in image_paths(folder):
        yield read_rgb(path)


def video_frames(path: str | Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DatasetError(f"{path}: cannot open video")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def frame_source(images: str | None = None, video: str | None = None,
                 size: tuple[int, int] = (360, 480)) -> Iterator[np.ndarray]:
    """Frames from a folder, a video, or (neither given) the endless synthetic scene."""
    if images:
        return image_folder_frames(images)
    if video:
        return video_frames(video)
    return (synthetic_road_scene(index, size) for index in itertools.count())
