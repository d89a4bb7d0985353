"""Training data held on the device: every decoded frame in one tensor, augmented in batches.

FBSNet is small enough that on a GPU the data pipeline, not the network, sets the pace: a
DataLoader decoding and augmenting frames on the CPU leaves the GPU waiting. Here the whole
training set is decoded once into uint8 tensors on the training device, and each batch is
drawn, scaled, cropped, flipped and colour-jittered there with batched tensor ops. The same
code runs on the CPU (the tests use it there).

Each epoch's order and each sample's augmentation come from a generator seeded with
(seed, epoch), so a run resumed at an epoch boundary replays exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from fbsnet_ros.data.classes import IGNORE_INDEX
from fbsnet_ros.data.datasets import SegmentationDataset
from fbsnet_ros.data.io import DatasetError

# Keeps the (seed, epoch) streams of different epochs apart: seed * stride + epoch.
EPOCH_SEED_STRIDE = 100_003


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator every random draw of one epoch comes from."""
    return torch.Generator().manual_seed(seed * EPOCH_SEED_STRIDE + epoch)


class DeviceFrames:
    """All frames of a dataset as (N, 3, H, W) uint8 RGB and (N, H, W) uint8 labels on a device.

    Frames must share one size, or `base_size` (height, width) resizes them all to it once.
    """

    def __init__(self, dataset: SegmentationDataset, device: torch.device,
                 base_size: Sequence[int] | None = None) -> None:
        images, labels = [], []
        for index in range(len(dataset)):
            image, label = dataset.load(index)
            if base_size is not None and tuple(label.shape) != tuple(base_size):
                height, width = base_size
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
            if labels and label.shape != labels[0].shape:
                path = dataset.pairs[index][0]
                raise DatasetError(
                    f"{path}: frame is {label.shape[0]}x{label.shape[1]}, the first was "
                    f"{labels[0].shape[0]}x{labels[0].shape[1]}; data_on_device needs one size "
                    f"(set base_size)")
            images.append(image)
            labels.append(label)
        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(np.stack(labels))
        self.images, self.labels = self.images.to(device), self.labels.to(device)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.labels.shape[1:])


@dataclass
class Photometric:
    """Strengths of the colour augmentations; each factor is drawn from [1 - s, 1 + s]."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    channel_gain: float = 0.0  # per-channel gain (white balance), as TrainTransform's jitter
    blur_probability: float = 0.0  # chance of a 3x3 Gaussian blur (defocus, motion)


# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


class BatchAugment:
    """Random scale, crop (padding with the ignore label), flip and photometric changes.

    Matches TrainTransform's geometry: a frame scaled by s is cropped at a random offset, and a
    scaled frame smaller than the crop is padded at the bottom and right (black image,
    IGNORE_INDEX labels). All of it is one `grid_sample` per batch: bilinear for images,
    nearest for labels.
    """

    def __init__(self, crop_size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 scale_range: tuple[float, float] = (0.75, 2.0), flip: bool = True,
                 photometric: Photometric | None = None) -> None:
        self.crop_size = tuple(int(v) for v in crop_size)
        self.scale_range = scale_range
        self.flip = flip
        self.photometric = photometric or Photometric()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0

    def geometry(self, count: int, frame_size: tuple[int, int],
                 generator: torch.Generator) -> torch.Tensor:
        """(count, 2, 3) affine matrices from crop coordinates to normalised frame coordinates.

        With align_corners=False, crop pixel x of a frame of width W scaled by s at offset left
        samples frame coordinate x_n = a * x_base + b, a = cw / (s W), b = (2 left + cw)/(s W) - 1.
        """
        height, width = frame_size
        crop_h, crop_w = self.crop_size
        low, high = self.scale_range
        scale = low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)
        scaled_h = torch.clamp(torch.round(height * scale), min=1)
        scaled_w = torch.clamp(torch.round(width * scale), min=1)
        # Offsets uniform over the valid integer positions, 0 when the scaled frame is smaller.
        top = torch.floor(torch.rand(count, generator=generator, dtype=torch.float64)
                          * (torch.clamp(scaled_h - crop_h, min=0) + 1))
        left = torch.floor(torch.rand(count, generator=generator, dtype=torch.float64)
                           * (torch.clamp(scaled_w - crop_w, min=0) + 1))
        flipped = torch.rand(count, generator=generator) < 0.5 if self.flip else \
            torch.zeros(count, dtype=torch.bool)
        theta = torch.zeros(count, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = crop_w / scaled_w * torch.where(flipped, -1.0, 1.0)
        theta[:, 0, 2] = (2 * left + crop_w) / scaled_w - 1
        theta[:, 1, 1] = crop_h / scaled_h
        theta[:, 1, 2] = (2 * top + crop_h) / scaled_h - 1
        return theta.float()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn uint8 (B, 3, H, W) frames and (B, H, W) labels into crops and int64 labels."""
        count, device = images.shape[0], images.device
        theta = self.geometry(count, tuple(labels.shape[1:]), generator).to(device)
        grid = F.affine_grid(theta, [count, 1, *self.crop_size], align_corners=False)
        crops = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        # Labels shifted by one so that the zero padding marks pixels outside the frame.
        shifted = F.grid_sample(labels.unsqueeze(1).float() + 1, grid, mode="nearest",
                                padding_mode="zeros", align_corners=False).squeeze(1)
        crop_labels = (shifted.round().long() - 1).masked_fill_(shifted < 0.5, IGNORE_INDEX)
        crops = self._photometric(crops, generator)
        crops = (crops - self.mean.to(device)) / self.std.to(device)
        return crops, crop_labels

    def _factors(self, strength: float, shape: tuple[int, ...],
                 generator: torch.Generator) -> torch.Tensor:
        return 1 + strength * (2 * torch.rand(shape, generator=generator) - 1)

    def _photometric(self, crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Brightness, contrast, saturation, channel gain, blur on 0-255 floats, clamped."""
        settings, count, device = self.photometric, crops.shape[0], crops.device
        # Every draw is made whatever the strengths, so the stream does not depend on them.
        brightness = self._factors(settings.brightness, (count, 1, 1, 1), generator)
        contrast = self._factors(settings.contrast, (count, 1, 1, 1), generator)
        saturation = self._factors(settings.saturation, (count, 1, 1, 1), generator)
        gain = self._factors(settings.channel_gain, (count, 3, 1, 1), generator)
        blurred = torch.rand(count, generator=generator) < settings.blur_probability
        if not any((settings.brightness, settings.contrast, settings.saturation,
                    settings.channel_gain, settings.blur_probability)):
            return crops
        crops = crops * (brightness * gain).to(device)
        luma = torch.tensor(LUMA, device=device).view(1, 3, 1, 1)
        grey = (crops * luma).sum(1, keepdim=True)
        mean_grey = grey.mean(dim=(2, 3), keepdim=True)
        crops = mean_grey + (crops - mean_grey) * contrast.to(device)
        grey = (crops * luma).sum(1, keepdim=True)
        crops = grey + (crops - grey) * saturation.to(device)
        crops = crops.clamp_(0, 255)
        if blurred.any():
            kernel = torch.tensor([1.0, 2.0, 1.0], device=device)
            kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
            index = blurred.nonzero().flatten().to(device)
            soft = F.conv2d(F.pad(crops[index], (1, 1, 1, 1), mode="replicate"), kernel,
                            groups=3)
            crops = crops.index_copy(0, index, soft)
        return crops


def device_batches(frames: DeviceFrames, augment: BatchAugment, batch_size: int, seed: int,
                   epoch: int, max_steps: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch of augmented batches in (seed, epoch) order, dropping a partial batch."""
    generator = epoch_generator(seed, epoch)
    order = torch.randperm(len(frames), generator=generator)
    steps = len(frames) // batch_size
    if max_steps:
        steps = min(steps, max_steps)
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size].to(frames.images.device)
        yield augment(frames.images[index], frames.labels[index], generator)
