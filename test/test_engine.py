"""The inference engine on real CamVid frames, checkpoints, palettes and overlays."""

import pickle

import numpy as np
import pytest
import torch

from fbsnet_ros.data.io import read_label, read_rgb
from fbsnet_ros.inference import (
    CheckpointError,
    Segmenter,
    colorize,
    load_model,
    overlay,
    palette_array,
    save_inference_checkpoint,
)


def first_val_frame(camvid_root):
    image_rel, label_rel = (camvid_root / "val.txt").read_text().split("\n")[0].split()
    return read_rgb(camvid_root / image_rel), read_label(camvid_root / label_rel)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_predict_real_frame_at_camera_size(camvid_root, random_checkpoint, upsample):
    image, label = first_val_frame(camvid_root)
    segmenter = Segmenter.from_checkpoint(random_checkpoint, device="cpu", upsample=upsample)
    labels = segmenter.predict(image)
    assert labels.shape == image.shape[:2] == label.shape == (360, 480)
    assert labels.dtype == np.uint8
    assert labels.max() < segmenter.num_classes


def test_predict_any_frame_size_and_input_size_override(random_checkpoint):
    segmenter = Segmenter.from_checkpoint(random_checkpoint, device="cpu", input_size=(64, 80))
    assert segmenter.input_size == (64, 80)
    frame = np.random.default_rng(0).integers(0, 256, (123, 457, 3), dtype=np.uint8)
    assert segmenter.predict(frame).shape == (123, 457)


def test_bilinear_and_nearest_agree_on_most_pixels(camvid_root, random_checkpoint):
    image, _ = first_val_frame(camvid_root)
    accurate = Segmenter.from_checkpoint(random_checkpoint, device="cpu").predict(image)
    fast = Segmenter.from_checkpoint(random_checkpoint, device="cpu",
                                     upsample="nearest").predict(image)
    assert (accurate == fast).mean() > 0.8


def test_bad_options_name_the_parameter(random_checkpoint):
    with pytest.raises(ValueError, match="input_size"):
        Segmenter.from_checkpoint(random_checkpoint, device="cpu", input_size=(100, 100))
    with pytest.raises(ValueError, match="upsample"):
        Segmenter.from_checkpoint(random_checkpoint, device="cpu", upsample="cubic")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Segmenter.from_checkpoint(random_checkpoint, device="cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        Segmenter.from_checkpoint(random_checkpoint, device="tpu")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Segmenter.from_checkpoint(random_checkpoint, device="cpu").predict(np.zeros((4, 4)))


def test_checkpoint_round_trip(random_checkpoint, tmp_path):
    model, metadata = load_model(random_checkpoint)
    copy = tmp_path / "copy.pt"
    save_inference_checkpoint(model, metadata, copy)
    model_again, metadata_again = load_model(copy)
    assert metadata_again == metadata
    state_again = model_again.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state_again[name])
    payload = torch.load(copy, weights_only=True)
    assert set(payload["metadata"]) >= {"config", "class_names", "palette", "mean", "std",
                                        "input_size", "dataset", "training", "seed"}
    assert "optimizer" not in payload
    assert [p.name for p in tmp_path.iterdir()] == ["copy.pt"]  # no temporary left behind


class Opaque:
    """Any class instance: weights_only loading must refuse to rebuild it."""


def test_checkpoint_with_pickled_object_is_refused(random_checkpoint, tmp_path):
    payload = torch.load(random_checkpoint, weights_only=True)
    payload["metadata"]["training"]["extra"] = Opaque()
    path = tmp_path / "pickled.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="refused"):
        Segmenter.from_checkpoint(path)


def test_checkpoint_errors_name_the_file(tmp_path, random_checkpoint):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(random_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_model(truncated)
    not_ours = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), not_ours)
    with pytest.raises(CheckpointError, match="not an fbsnet_ros checkpoint"):
        load_model(not_ours)
    payload = torch.load(random_checkpoint, weights_only=True)
    payload["metadata"]["palette"] = payload["metadata"]["palette"][:5]
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError, match="11 classes but 11 class names and 5 palette"):
        load_model(mismatched)
    with open(tmp_path / "plain.pkl", "wb") as stream:
        pickle.dump({"a": 1}, stream)
    with pytest.raises(CheckpointError, match="plain.pkl"):
        load_model(tmp_path / "plain.pkl")


def test_colorize_and_overlay_values():
    palette = palette_array([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    labels = np.array([[0, 1], [2, 7]], dtype=np.uint8)
    mask = colorize(labels, palette)
    assert mask.tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 0, 0]]]
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    assert np.array_equal(overlay(image, mask, 0.0), image)
    assert np.array_equal(overlay(image, mask, 1.0), mask)
    half = overlay(image, mask, 0.5)
    assert half[0, 0].tolist() == [178, 50, 50]
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, mask, 1.5)
