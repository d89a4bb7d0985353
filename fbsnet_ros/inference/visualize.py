"""Palette colouring and alpha overlays, vectorised with NumPy lookups and OpenCV blending."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """A 256x3 uint8 lookup table: class id -> RGB, ids past the palette black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    table[: len(colours)] = colours
    return table


def colorize(labels: np.ndarray, palette_table: np.ndarray) -> np.ndarray:
    """HxW class ids to an HxWx3 RGB colour mask."""
    return palette_table[labels]


def overlay(image: np.ndarray, color_mask: np.ndarray, alpha: float) -> np.ndarray:
    """Blend the colour mask over the image: (1 - alpha) * image + alpha * mask.

    Both must use the same channel order; the result has the image's.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be within [0, 1], got {alpha}")
    return cv2.addWeighted(image, 1.0 - alpha, color_mask, alpha, 0.0)
