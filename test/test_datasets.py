"""Dataset layouts (Cityscapes, image/label folders, CamVid lists) on files the tests write,
label conversion, paired transforms, and errors that name the file at fault."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fbsnet_ros.data.classes import CITYSCAPES_CLASS_NAMES, IGNORE_INDEX
from fbsnet_ros.data.datasets import (
    build_dataset,
    camvid,
    cityscapes,
    cityscapes_train_id_lookup,
    folder,
    read_class_file,
)
from fbsnet_ros.data.io import DatasetError
from fbsnet_ros.data.transforms import TrainTransform
from fbsnet_ros.training.config import TrainConfig

HEIGHT, WIDTH = 8, 12


def write_png(path: Path, array: np.ndarray) -> Path:
    """RGB arrays are written as colour PNGs, 2-D arrays as 8-bit single-channel PNGs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = array[:, :, ::-1] if array.ndim == 3 else array
    assert cv2.imwrite(str(path), np.ascontiguousarray(pixels))
    return path


def rgb_frame(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- Cityscapes ---------------------------------------------------------------------------

# (label id, expected train id): classes kept, void and rare classes ignored, ids past the table.
CITYSCAPES_CASES = [
    (7, 0),  # road
    (8, 1),  # sidewalk
    (26, 13),  # car
    (33, 18),  # bicycle
    (0, IGNORE_INDEX),  # unlabeled
    (1, IGNORE_INDEX),  # ego vehicle
    (9, IGNORE_INDEX),  # parking
    (29, IGNORE_INDEX),  # caravan
    (34, IGNORE_INDEX),  # not in the table
]


def cityscapes_label_ids() -> np.ndarray:
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for column, (label_id, _) in enumerate(CITYSCAPES_CASES):
        ids[:, column] = label_id
    return ids


def expected_train_ids() -> np.ndarray:
    expected = np.full((HEIGHT, WIDTH), IGNORE_INDEX, dtype=np.uint8)  # columns 9-11: id 0
    for column, (_, train_id) in enumerate(CITYSCAPES_CASES):
        expected[:, column] = train_id
    return expected


@pytest.fixture
def cityscapes_root(tmp_path) -> Path:
    """Two cities of train and one of val in the official layout, with the sibling files
    (color, instanceIds, polygons) that a real download also has."""
    root = tmp_path / "cityscapes"
    frames = {"train": [("aachen", "aachen_000001_000019"), ("aachen", "aachen_000000_000019"),
                        ("bochum", "bochum_000000_000313")],
              "val": [("frankfurt", "frankfurt_000000_000294")]}
    for split, entries in frames.items():
        for seed, (city, frame) in enumerate(entries):
            write_png(root / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png",
                      rgb_frame(seed))
            gt = root / "gtFine" / split / city
            write_png(gt / f"{frame}_gtFine_labelIds.png", cityscapes_label_ids())
            write_png(gt / f"{frame}_gtFine_color.png", rgb_frame(99))
            write_png(gt / f"{frame}_gtFine_instanceIds.png", np.full((HEIGHT, WIDTH), 26,
                                                                        dtype=np.uint8))
            (gt / f"{frame}_gtFine_polygons.json").write_text("{}")
    return root


def test_cityscapes_lookup_follows_the_cityscapesscripts_table():
    from cityscapesscripts.helpers.labels import labels

    lookup = cityscapes_train_id_lookup()
    names_by_train_id = {}
    for label in labels:
        if 0 <= label.trainId < 19:
            assert lookup[label.id] == label.trainId, label.name
            names_by_train_id[label.trainId] = label.name
        elif label.id >= 0:
            assert lookup[label.id] == IGNORE_INDEX, label.name
    assert tuple(names_by_train_id[i] for i in range(19)) == CITYSCAPES_CLASS_NAMES
    assert sorted(set(lookup.tolist())) == [*list(range(19)), IGNORE_INDEX]


def test_cityscapes_layout_pairs_frames_and_converts_label_ids(cityscapes_root):
    config = TrainConfig(dataset="cityscapes", data_root=str(cityscapes_root))
    train = build_dataset(config, "train")
    assert train.class_names == CITYSCAPES_CLASS_NAMES
    assert len(train.palette) == 19
    assert [image.name for image, _ in train.pairs] == [
        "aachen_000000_000019_leftImg8bit.png", "aachen_000001_000019_leftImg8bit.png",
        "bochum_000000_000313_leftImg8bit.png"]
    assert [label.name for _, label in train.pairs] == [
        "aachen_000000_000019_gtFine_labelIds.png", "aachen_000001_000019_gtFine_labelIds.png",
        "bochum_000000_000313_gtFine_labelIds.png"]
    image, label = train.load(1)
    np.testing.assert_array_equal(image, rgb_frame(0))
    np.testing.assert_array_equal(label, expected_train_ids())
    np.testing.assert_array_equal(train.load_label(2), expected_train_ids())
    val = cityscapes(cityscapes_root, "val")
    assert [image.parent.name for image, _ in val.pairs] == ["frankfurt"]


def test_cityscapes_missing_label_or_folder_names_the_path(cityscapes_root):
    label = (cityscapes_root / "gtFine" / "train" / "bochum"
             / "bochum_000000_000313_gtFine_labelIds.png")
    label.unlink()
    with pytest.raises(DatasetError, match=f"{label}: label missing"):
        cityscapes(cityscapes_root, "train")
    with pytest.raises(DatasetError, match="leftImg8bit/test: Cityscapes image folder missing"):
        cityscapes(cityscapes_root, "test")


# --- image/label folders ------------------------------------------------------------------

def test_folder_dataset_with_class_ids_and_names_only(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "classes.txt").write_text("# my classes\nbackground\n\ntraffic cone\nperson\n")
    ids = np.array([[0, 1, 2, 3, 7, IGNORE_INDEX]] * 4, dtype=np.uint8)
    write_png(root / "images" / "train" / "b.jpg", rgb_frame(1, 4, 6))
    write_png(root / "images" / "train" / "a.png", rgb_frame(2, 4, 6))
    write_png(root / "labels" / "train" / "a.png", ids)
    write_png(root / "labels" / "train" / "b.png", ids)
    config = TrainConfig(dataset="folder", data_root=str(root))
    dataset = build_dataset(config, "train")
    assert dataset.class_names == ("background", "traffic cone", "person")
    assert len(set(dataset.palette)) == 3
    assert [image.name for image, _ in dataset.pairs] == ["a.png", "b.jpg"]
    image, label = dataset.load(0)
    np.testing.assert_array_equal(image, rgb_frame(2, 4, 6))
    # Ids past the class list are ignored.
    np.testing.assert_array_equal(label[0], [0, 1, 2] + [IGNORE_INDEX] * 3)


def test_folder_dataset_decodes_colour_labels_from_class_file(tmp_path):
    root = tmp_path / "mine"
    class_file = tmp_path / "colours.txt"
    class_file.write_text("road 128 64 128\ntraffic light 250 170 30\nsky 70 130 180\n")
    colours = np.array([[[128, 64, 128], [250, 170, 30], [70, 130, 180], [1, 2, 3]]],
                       dtype=np.uint8)
    write_png(root / "images" / "val" / "f.png", rgb_frame(3, 1, 4))
    write_png(root / "labels" / "val" / "f.png", colours)
    config = TrainConfig(dataset="folder", data_root=str(root), class_file=str(class_file))
    dataset = build_dataset(config, "val")
    assert dataset.class_names == ("road", "traffic light", "sky")
    assert dataset.palette == ((128, 64, 128), (250, 170, 30), (70, 130, 180))
    np.testing.assert_array_equal(dataset.load(0)[1], [[0, 1, 2, IGNORE_INDEX]])


@pytest.mark.parametrize("text, message", [
    ("", "lists no classes"),
    ("road\nroad\n", "class names repeated: road"),
    ("road 1 2 3\ncar\n", "on every line or on none"),
    ("road 1 2 300\n", "colour values must be 0-255"),
    ("road 1 2 3\ncar 1 2 3\n", "two classes share a colour"),
])
def test_class_file_errors_name_the_file(tmp_path, text, message):
    class_file = tmp_path / "classes.txt"
    class_file.write_text(text)
    with pytest.raises(DatasetError, match=f"{class_file}.*{message}"):
        read_class_file(class_file)


def make_folder_split(root: Path, stems=("a", "b")) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("ground\nthing\n")
    for seed, stem in enumerate(stems):
        write_png(root / "images" / "train" / f"{stem}.png", rgb_frame(seed))
        write_png(root / "labels" / "train" / f"{stem}.png", np.zeros((HEIGHT, WIDTH), np.uint8))


def test_folder_dataset_errors_name_the_file(tmp_path):
    root = tmp_path / "mine"
    make_folder_split(root)
    (root / "labels" / "train" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"labels/train/b\.png: label missing \(for image "):
        folder(root, "train")
    make_folder_split(root)
    (root / "images" / "train" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"images/train/a\.\*: image missing \(for label "):
        folder(root, "train")
    with pytest.raises(DatasetError, match=r"missing/classes\.txt: class file missing"):
        folder(root, "train", class_file=tmp_path / "missing" / "classes.txt")


def test_unreadable_label_and_size_mismatch_name_the_file(tmp_path):
    root = tmp_path / "mine"
    make_folder_split(root)
    broken = root / "labels" / "train" / "a.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = folder(root, "train")
    with pytest.raises(DatasetError, match=f"{broken}: label unreadable or not an image"):
        dataset.load(0)
    small = write_png(root / "labels" / "train" / "b.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match=f"{small}: label is 4x4 but image .*b.png is 8x12"):
        dataset.load(1)
    colour = write_png(root / "labels" / "train" / "b.png", rgb_frame(5))
    with pytest.raises(DatasetError, match=f"{colour}: label must be single-channel"):
        dataset.load(1)


def test_camvid_list_errors_name_the_file(tmp_path):
    root = tmp_path / "camvid"
    write_png(root / "train" / "x.png", rgb_frame(0))
    write_png(root / "trainannot" / "x.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    (root / "train.txt").write_text(
        "train/x.png trainannot/x.png\ntrain/gone.png trainannot/x.png\n")
    with pytest.raises(DatasetError, match=r"train/gone\.png: image missing"):
        camvid(root, "train")
    (root / "train.txt").write_text("train/x.png trainannot/x.png\n")
    (root / "train" / "x.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"train/x\.png: image unreadable or not an image"):
        camvid(root, "train").load(0)
    with pytest.raises(DatasetError, match=r"val\.txt: list file missing"):
        camvid(root, "val")


# --- paired transforms ---------------------------------------------------------------------

def test_train_transform_pads_with_ignore_and_replays_from_the_rng():
    image = rgb_frame(0, 6, 10)
    label = np.ones((6, 10), dtype=np.uint8)
    transform = TrainTransform((16, 24), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                               scale_range=(1.0, 1.0))
    tensor, target = transform(image, label, np.random.default_rng(3))
    assert tensor.shape == (3, 16, 24) and target.shape == (16, 24)
    # The 6x10 frame fills one corner (flipped or not); the rest is padding, ignored.
    assert int((target == 1).sum()) == 60
    assert int((target == IGNORE_INDEX).sum()) == 16 * 24 - 60
    again, target_again = transform(image, label, np.random.default_rng(3))
    assert bool((again == tensor).all()) and bool((target_again == target).all())
