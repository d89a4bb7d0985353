"""Segmentation datasets yielding (RGB image, label map) pairs as NumPy arrays.

Three layouts are understood (`build_dataset` picks one from a training config):

- `camvid`: SegNet list files, `<root>/<split>.txt` holding `image label` pairs.
- `cityscapes`: `<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` with
  `<root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`; label ids become the 19 train ids.
- `folder`: `<root>/images/<split>/<stem>.<png|jpg|...>` with `<root>/labels/<split>/<stem>.png`,
  classes from a class file (default `<root>/classes.txt`, see `read_class_file`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from fbsnet_ros.data.classes import (
    CAMVID_CLASS_NAMES,
    CAMVID_PALETTE,
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
)
from fbsnet_ros.data.io import (
    IMAGE_SUFFIXES,
    DatasetError,
    check_same_size,
    read_label,
    read_rgb,
)

PairTransform = Callable[[np.ndarray, np.ndarray], tuple]

# Label maps must be lossless: JPEG artefacts would invent class ids.
LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
# Label values are uint8 and IGNORE_INDEX is reserved, so at most this many classes.
MAX_CLASSES = IGNORE_INDEX


class SegmentationDataset(Dataset):
    """Pairs of image and label files; label values outside the class list become IGNORE_INDEX.

    `label_lookup` (256 entries) maps stored label values to class ids, e.g. Cityscapes label
    ids to train ids; by default values 0..N-1 are the class ids. With `colour_labels`,
    three-channel label files are decoded by the palette colours instead.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        *,
        transform: PairTransform | None = None,
        cache: bool = False,
        label_lookup: np.ndarray | None = None,
        colour_labels: bool = False,
    ) -> None:
        if not pairs:
            raise DatasetError("dataset has no image/label pairs")
        self.pairs = [(Path(image), Path(label)) for image, label in pairs]
        self.class_names = tuple(class_names)
        self.palette = tuple(tuple(int(v) for v in colour) for colour in palette)
        self.transform = transform
        self.colour_labels = colour_labels
        # Decoding PNGs costs as much as a training step at low resolution; small sets fit in RAM.
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self._lookup = self._identity_lookup() if label_lookup is None else label_lookup
        if self._lookup.shape != (256,) or self._lookup.dtype != np.uint8:
            raise ValueError("label_lookup must be 256 uint8 entries")
        self._check_files_exist()

    def _identity_lookup(self) -> np.ndarray:
        lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        lookup[: len(self.class_names)] = np.arange(len(self.class_names), dtype=np.uint8)
        return lookup

    def _check_files_exist(self) -> None:
        """Fail at start, naming the file, rather than hours into a run."""
        for image_path, label_path in self.pairs:
            if not image_path.is_file():
                raise DatasetError(f"{image_path}: image missing")
            if not label_path.is_file():
                raise DatasetError(f"{label_path}: label missing (for image {image_path})")

    def __len__(self) -> int:
        return len(self.pairs)

    def _read_label(self, label_path: Path) -> np.ndarray:
        colours = self.palette if self.colour_labels else None
        return self._lookup[read_label(label_path, colours)]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed image (RGB) and label (IGNORE_INDEX for ignored pixels)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image_path, label_path = self.pairs[index]
        image = read_rgb(image_path)
        label = self._read_label(label_path)
        check_same_size(image, label, image_path, label_path)
        if self._cache is not None:
            self._cache[index] = (image, label)
        return image, label

    def load_label(self, index: int) -> np.ndarray:
        """The label alone (class statistics need no image decoding unless frames are cached)."""
        if self._cache is not None:
            return self.load(index)[1]
        return self._read_label(self.pairs[index][1])

    def preload(self) -> None:
        """Fill the cache now, so DataLoader workers forked later share it."""
        if self._cache is not None:
            for index in range(len(self)):
                self.load(index)

    def __getitem__(self, index: int):
        image, label = self.load(index)
        if self.transform is None:
            return image, label
        return self.transform(image, label)


def read_list_file(
    list_file: str | Path, root: str | Path | None = None
) -> list[tuple[Path, Path]]:
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
        pairs.append((_list_entry(root, fields[0]), _list_entry(root, fields[1])))
    return pairs


def _list_entry(root: Path, entry: str) -> Path:
    """An absolute path that exists is used as written; any other entry is relative to root
    (SegNet's own lists write '/SegNet/CamVid/...' for files under the data root)."""
    if Path(entry).is_absolute() and Path(entry).exists():
        return Path(entry)
    return root / entry.lstrip("/")


def camvid(root: str | Path, split: str, **kwargs) -> SegmentationDataset:
    """CamVid in the SegNet layout (11 classes; label 11, unlabelled, becomes IGNORE_INDEX)."""
    pairs = read_list_file(Path(root) / f"{split}.txt", root)
    return SegmentationDataset(pairs, CAMVID_CLASS_NAMES, CAMVID_PALETTE, **kwargs)


@functools.lru_cache(maxsize=1)
def cityscapes_train_id_lookup() -> np.ndarray:
    """Cityscapes label id -> train id (0-18), from the official `cityscapesscripts` table.

    Label ids whose train id is 255 or -1 (void, rare classes) become IGNORE_INDEX.
    """
    # Only the label table: the package's other modules import plotting and GUI libraries.
    from cityscapesscripts.helpers.labels import labels

    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < len(CITYSCAPES_CLASS_NAMES):
            lookup[label.id] = label.trainId
    lookup.setflags(write=False)
    return lookup


CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """Every leftImg8bit frame of the split with its gtFine labelIds file (sorted by name)."""
    image_dir = Path(root) / "leftImg8bit" / split
    label_dir = Path(root) / "gtFine" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: Cityscapes image folder missing")
    pairs = []
    for image_path in sorted(image_dir.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}")):
        frame = image_path.name[: -len(CITYSCAPES_IMAGE_SUFFIX)]
        label_path = label_dir / image_path.parent.name / f"{frame}{CITYSCAPES_LABEL_SUFFIX}"
        pairs.append((image_path, label_path))
    if not pairs:
        raise DatasetError(f"{image_dir}: no <city>/*{CITYSCAPES_IMAGE_SUFFIX} frames")
    return pairs


def cityscapes(root: str | Path, split: str, **kwargs) -> SegmentationDataset:
    """Cityscapes fine annotations: 19 train ids, every other label id ignored."""
    return SegmentationDataset(cityscapes_pairs(root, split), CITYSCAPES_CLASS_NAMES,
                               CITYSCAPES_PALETTE, label_lookup=cityscapes_train_id_lookup(),
                               **kwargs)


def default_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for classes given without one (the PASCAL VOC bit-interleaved map)."""
    colours = []
    for index in range(count):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((red, green, blue))
    return tuple(colours)


def read_class_file(
    path: str | Path,
) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...], bool]:
    """Class names, palette and whether the file gave colours.

    One class per line in id order: `name` or `name r g b` (names may contain spaces; all lines
    give colours or none do). Blank lines and lines starting with `#` are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class file missing")
    names, colours = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if len(fields) >= 4 and all(field.lstrip("-").isdigit() for field in fields[-3:]):
            colour = tuple(int(field) for field in fields[-3:])
            if not all(0 <= value <= 255 for value in colour):
                raise DatasetError(f"{path}:{number}: colour values must be 0-255, got {colour}")
            names.append(" ".join(fields[:-3]))
            colours.append(colour)
        else:
            names.append(text)
            colours.append(None)
    if not names:
        raise DatasetError(f"{path}: class file lists no classes")
    if len(names) > MAX_CLASSES:
        raise DatasetError(f"{path}: {len(names)} classes; at most {MAX_CLASSES} fit uint8 labels")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"{path}: class names repeated: {', '.join(duplicates)}")
    given = [colour is not None for colour in colours]
    if any(given) and not all(given):
        raise DatasetError(f"{path}: give a colour 'name r g b' on every line or on none")
    if all(given):
        if len(set(colours)) != len(colours):
            raise DatasetError(f"{path}: two classes share a colour")
        return tuple(names), tuple(colours), True
    return tuple(names), default_palette(len(names)), False


def _files_by_stem(folder: Path, suffixes: Sequence[str], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} folder missing")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in by_stem:
            raise DatasetError(
                f"{path}: two {what}s named {path.stem!r} (also {by_stem[path.stem]})")
        by_stem[path.stem] = path
    return by_stem


def folder_pairs(image_dir: str | Path, label_dir: str | Path) -> list[tuple[Path, Path]]:
    """Images and labels matched by file stem; an image or a label without a partner is an error."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES, "image")
    labels = _files_by_stem(label_dir, LABEL_SUFFIXES, "label")
    if not images:
        raise DatasetError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for stem, image_path in images.items():
        if stem not in labels:
            raise DatasetError(
                f"{label_dir / (stem + '.png')}: label missing (for image {image_path})")
    for stem, label_path in labels.items():
        if stem not in images:
            raise DatasetError(f"{image_dir / stem}.*: image missing (for label {label_path})")
    return [(images[stem], labels[stem]) for stem in sorted(images)]


def folder(root: str | Path, split: str, class_file: str | Path | None = None,
           **kwargs) -> SegmentationDataset:
    """Users' own data: `<root>/images/<split>/` and `<root>/labels/<split>/`, matched by stem.

    Labels are single-channel PNGs of class ids (ids past the class list are ignored) or, when
    the class file gives colours, RGB PNGs in those colours (other colours are ignored).
    """
    root = Path(root)
    names, palette, has_colours = read_class_file(class_file or root / "classes.txt")
    pairs = folder_pairs(root / "images" / split, root / "labels" / split)
    return SegmentationDataset(pairs, names, palette, colour_labels=has_colours, **kwargs)


def build_dataset(config, split: str, **kwargs) -> SegmentationDataset:
    """The dataset a training config names, for one split."""
    if config.dataset == "camvid":
        return camvid(config.data_root, split, **kwargs)
    if config.dataset == "cityscapes":
        return cityscapes(config.data_root, split, **kwargs)
    if config.dataset == "folder":
        return folder(config.data_root, split, config.class_file or None, **kwargs)
    raise DatasetError(f"unknown dataset {config.dataset!r}; choose camvid, cityscapes or folder")
