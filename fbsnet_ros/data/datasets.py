"""Segmentation datasets yielding (RGB image, label map) pairs as NumPy arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from fbsnet_ros.data.classes import (
    CAMVID_CLASS_NAMES,
    CAMVID_PALETTE,
    IGNORE_INDEX,
)
from fbsnet_ros.data.io import DatasetError, check_same_size, read_label, read_rgb

PairTransform = Callable[[np.ndarray, np.ndarray], tuple]


class SegmentationDataset(Dataset):
    """Pairs of image and label files; label values outside the class list become IGNORE_INDEX."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        *,
        transform: PairTransform | None = None,
        cache: bool = False,
    ) -> None:
        if not pairs:
            raise DatasetError("dataset has no image/label pairs")
        self.pairs = list(pairs)
        self.class_names = tuple(class_names)
        self.palette = tuple(tuple(int(v) for v in colour) for colour in palette)
        self.transform = transform
        # Decoding PNGs costs as much as a training step at low resolution; small sets fit in RAM.
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self._lookup = self._label_lookup()

    def _label_lookup(self) -> np.ndarray:
        lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        lookup[: len(self.class_names)] = np.arange(len(self.class_names), dtype=np.uint8)
        return lookup

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed image (RGB) and label (IGNORE_INDEX for ignored pixels)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_path, label_path = self.pairs[index]
        image = read_rgb(image_path)
        label = self._lookup[read_label(label_path)]
        check_same_size(image, label, image_path, label_path)
        if self._cache is not None:
            self._cache[index] = (image, label)
        return image, label

    def __getitem__(self, index: int):
        image, label = self.load(index)
        if self.transform is None:
            return image, label
        return self.transform(image, label)


def read_list_file(list_file: str | Path, root: str | Path | None = None) -> list[tuple[Path, Path]]:
    """SegNet-style list: one `image_path label_path` pair per line, relative to root."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise DatasetError(f"{list_file}: list file missing")
    root = Path(root) if root is not None else list_file.parent
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DatasetError(f"{list_file}:{number}: expected 'image label', got {line!r}")
        pairs.append((root / fields[0].lstrip("/"), root / fields[1].lstrip("/")))
    return pairs


def camvid(root: str | Path, split: str, **kwargs) -> SegmentationDataset:
    """CamVid in the SegNet layout (11 classes; label 11, unlabelled, becomes IGNORE_INDEX)."""
    pairs = read_list_file(Path(root) / f"{split}.txt", root)
    return SegmentationDataset(pairs, CAMVID_CLASS_NAMES, CAMVID_PALETTE, **kwargs)


def build_dataset(config, split: str, **kwargs) -> SegmentationDataset:
    """The dataset a training config names, for one split."""
    if config.dataset == "camvid":
        return camvid(config.data_root, split, **kwargs)
    raise DatasetError(f"unknown dataset {config.dataset!r}; choose camvid, cityscapes or folder")
