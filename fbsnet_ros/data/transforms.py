"""Paired image/label augmentations and the normalisation shared with inference."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from fbsnet_ros.data.classes import IGNORE_INDEX


def normalise(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """HxWx3 uint8 RGB to a 3xHxW float tensor, as the inference engine does."""
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub_(mean_t).div_(std_t)


class TrainTransform:
    """Random scale, pad with the ignore label, random crop, flip, optional colour jitter."""

    def __init__(
        self,
        crop_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        base_size: tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (0.75, 2.0),
        flip: bool = True,
        jitter: float = 0.0,
    ) -> None:
        self.crop_size = tuple(crop_size)
        self.base_size = tuple(base_size) if base_size else None
        self.scale_range = scale_range
        self.flip = flip
        self.jitter = jitter
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every random draw comes from `rng`, so a sample's augmentation can be replayed."""
        height, width = self.base_size or label.shape
        scale = rng.uniform(*self.scale_range)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        image, label = self._pad(image, label)
        image, label = self._crop(image, label, rng)
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.jitter > 0:
            image = self._colour_jitter(image, rng)
        return normalise(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64))

    def _pad(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pad_h = max(0, self.crop_size[0] - label.shape[0])
        pad_w = max(0, self.crop_size[1] - label.shape[1])
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
            label = cv2.copyMakeBorder(
                label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_INDEX
            )
        return image, label

    def _crop(self, image, label, rng) -> tuple[np.ndarray, np.ndarray]:
        crop_h, crop_w = self.crop_size
        top = rng.integers(0, label.shape[0] - crop_h + 1)
        left = rng.integers(0, label.shape[1] - crop_w + 1)
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        return image[window], label[window]

    def _colour_jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain = rng.uniform(1 - self.jitter, 1 + self.jitter, size=3)
        bias = rng.uniform(-self.jitter, self.jitter) * 255
        return np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)


class EvalTransform:
    """Whole frame resized to the model's input size; the label stays at full size for scoring."""

    def __init__(self, input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float]):
        self.input_size = tuple(input_size)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = self.input_size
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return normalise(resized, self.mean, self.std), torch.from_numpy(label.astype(np.int64))
