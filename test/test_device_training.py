"""Training with the data on the device (the GPU recipe), run here on the CPU: the batched
augmentation's geometry, the photometric ops, bf16/channels_last steps, exact resume, the
time-budgeted schedule and the training curve.

No compiled path here: torch.compile of a training step takes minutes.
"""

from __future__ import annotations

import pytest
import torch
from test_training import assert_same_training_state, run_values, single_thread, tiny_camvid
from torch.nn import functional as F

from fbsnet_ros.checkpoint import safe_load
from fbsnet_ros.data.classes import IGNORE_INDEX
from fbsnet_ros.data.datasets import camvid
from fbsnet_ros.training.config import load_train_config
from fbsnet_ros.training.curves import CURVE_FILE
from fbsnet_ros.training.device_data import BatchAugment, DeviceFrames, Photometric, device_batches
from fbsnet_ros.training.loop import Trainer, cpu_bf16_channels_last_gradients_are_right, train

__all__ = ["tiny_camvid"]  # the module fixture, shared with test_training

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


def frames_and_labels(count=3, height=24, width=32):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, height, width), dtype=torch.uint8,
                           generator=generator)
    labels = torch.randint(0, 11, (count, height, width), dtype=torch.uint8, generator=generator)
    return images, labels


def unnormalise(crops: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    return crops * std + mean


def test_identity_geometry_returns_the_frames_and_labels():
    images, labels = frames_and_labels()
    augment = BatchAugment((24, 32), MEAN, STD, scale_range=(1.0, 1.0), flip=False)
    crops, crop_labels = augment(images, labels, torch.Generator().manual_seed(1))
    assert crops.shape == (3, 3, 24, 32) and crop_labels.dtype == torch.int64
    assert torch.allclose(unnormalise(crops), images.float(), atol=1e-3)
    assert torch.equal(crop_labels, labels.long())


def test_flips_mirror_image_and_labels_together():
    images, labels = frames_and_labels(count=16)
    augment = BatchAugment((24, 32), MEAN, STD, scale_range=(1.0, 1.0), flip=True)
    crops, crop_labels = augment(images, labels, torch.Generator().manual_seed(3))
    flipped = [not torch.equal(crop_labels[i], labels[i].long()) for i in range(16)]
    assert 0 < sum(flipped) < 16, "a fair coin over 16 samples flips some, not all"
    for i, was_flipped in enumerate(flipped):
        expected = images[i].flip(-1) if was_flipped else images[i]
        assert torch.allclose(unnormalise(crops[i:i + 1])[0], expected.float(), atol=1e-3)
        expected_labels = labels[i].flip(-1) if was_flipped else labels[i]
        assert torch.equal(crop_labels[i], expected_labels.long())


def test_crops_of_an_enlarged_frame_are_windows_of_the_resized_frame():
    """Scale 2: a crop equals the same window of the frame upsampled 2x (bilinear, nearest)."""
    images, labels = frames_and_labels(count=4)
    augment = BatchAugment((16, 16), MEAN, STD, scale_range=(2.0, 2.0), flip=False)
    generator = torch.Generator().manual_seed(5)
    theta = augment.geometry(4, (24, 32), torch.Generator().manual_seed(5))
    crops, crop_labels = augment(images, labels, generator)
    big = F.interpolate(images.float(), scale_factor=2, mode="bilinear", align_corners=False)
    big_labels = F.interpolate(labels[:, None].float(), scale_factor=2, mode="nearest")[:, 0]
    for i in range(4):
        # Offsets back from theta: b = (2 offset + crop) / scaled - 1.
        left = round(((theta[i, 0, 2].item() + 1) * 64 - 16) / 2)
        top = round(((theta[i, 1, 2].item() + 1) * 48 - 16) / 2)
        window = (slice(top, top + 16), slice(left, left + 16))
        assert torch.allclose(unnormalise(crops[i:i + 1])[0], big[i][:, window[0], window[1]],
                              atol=0.05)
        assert torch.equal(crop_labels[i], big_labels[i][window].long())


def test_a_shrunk_frame_is_padded_with_ignore_labels_and_black():
    images, labels = frames_and_labels(count=2)
    augment = BatchAugment((24, 32), MEAN, STD, scale_range=(0.5, 0.5), flip=False)
    crops, crop_labels = augment(images, labels, torch.Generator().manual_seed(2))
    assert (crop_labels[:, 12:, :] == IGNORE_INDEX).all()
    assert (crop_labels[:, :, 16:] == IGNORE_INDEX).all()
    assert (crop_labels[:, :12, :16] < 11).all()
    assert torch.allclose(unnormalise(crops)[:, :, 12:, :], torch.zeros(1), atol=1e-3)


def test_photometric_changes_colours_only_within_range_and_replays_by_seed():
    images, labels = frames_and_labels(count=8)
    photometric = Photometric(brightness=0.4, contrast=0.4, saturation=0.4, channel_gain=0.1,
                              blur_probability=0.5)
    augment = BatchAugment((24, 32), MEAN, STD, scale_range=(1.0, 1.0), flip=False,
                           photometric=photometric)
    crops, crop_labels = augment(images, labels, torch.Generator().manual_seed(4))
    again, _ = augment(images, labels, torch.Generator().manual_seed(4))
    assert torch.equal(crops, again)
    assert torch.equal(crop_labels, labels.long())  # geometry untouched
    pixels = unnormalise(crops)
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
    changed = (pixels - images.float()).abs().flatten(1).mean(1)
    assert (changed > 1.0).all(), "every sample's colours move"


def test_device_frames_hold_the_dataset_and_batches_follow_seed_and_epoch(tiny_camvid):
    dataset = camvid(tiny_camvid, "train")
    frames = DeviceFrames(dataset, torch.device("cpu"), base_size=(72, 96))
    assert frames.images.shape == (4, 3, 72, 96) and frames.labels.shape == (4, 72, 96)
    augment = BatchAugment((48, 64), MEAN, STD)
    first = list(device_batches(frames, augment, 2, seed=7, epoch=0))
    replay = list(device_batches(frames, augment, 2, seed=7, epoch=0))
    other = list(device_batches(frames, augment, 2, seed=7, epoch=1))
    assert len(first) == 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(first, replay))
    assert not torch.equal(first[0][0], other[0][0])


def device_values(data_root, out_dir, **overrides) -> dict:
    # channels_last where this CPU's bf16 kernels compute it right (training refuses it otherwise).
    values = run_values(data_root, out_dir, data_on_device=True, amp=True, amp_dtype="bfloat16",
                        channels_last=cpu_bf16_channels_last_gradients_are_right(), brightness=0.2,
                        contrast=0.2, saturation=0.2, blur_probability=0.2, batch_size=2)
    values.update(overrides)
    return values


def test_bf16_steps_on_device_data_reduce_the_loss(tiny_camvid, tmp_path):
    config = load_train_config(None, device_values(tiny_camvid, tmp_path, epochs=100, lr=5e-3,
                                                   scale_range=[1.0, 1.0], jitter=0.0,
                                                   brightness=0.0, contrast=0.0,
                                                   saturation=0.0, blur_probability=0.0))
    trainer = Trainer(config)
    assert trainer.amp_dtype == torch.bfloat16
    summary = trainer.fit(stop_after_epochs=12)
    losses = [record["loss"] for record in trainer.history]
    assert summary["epochs"] == 12
    assert losses[-1] < 0.85 * losses[0], losses


def test_device_data_resume_gives_the_same_weights_as_one_straight_run(tiny_camvid, tmp_path):
    straight = tmp_path / "straight"
    train(load_train_config(None, device_values(tiny_camvid, straight)))
    resumed = tmp_path / "resumed"
    config = load_train_config(None, device_values(tiny_camvid, resumed))
    train(config, stop_after_epochs=1)
    train(load_train_config(None, device_values(tiny_camvid, resumed)))
    assert_same_training_state(safe_load(resumed / "last.pt"), safe_load(straight / "last.pt"))
    assert (straight / CURVE_FILE).is_file()
    best = safe_load(straight / "best.pt")
    validated = [record for record in best["history"] if "val_miou" in record]
    assert validated and set(validated[-1]["val_iou"]) == set(best["metadata"]["class_names"])


def test_time_budget_fits_the_schedule_once_and_stops_when_spent(tiny_camvid, tmp_path):
    config = load_train_config(None, device_values(tiny_camvid, tmp_path, epochs=100,
                                                   eval_every=1, time_budget_minutes=1.0))
    trainer = Trainer(config)
    steps = trainer._steps_per_epoch()
    trainer.history = [{"epoch": e, "loss": 1.0, "val_miou": 0.1} for e in (1, 2, 3)]
    trainer.start_epoch = 3
    for _ in range(3 * steps):
        trainer.optimizer.step()
        trainer.scheduler.step()
    # Three epochs ended 10 s apart, 25 s into the run: 35 s left fit 3 more epochs (3 % slack).
    assert not trainer._budget_spent(0.0, [5.0, 15.0, 25.0])
    assert config.epochs == 6 and trainer.budget_fitted
    assert trainer.scheduler.last_epoch == 3 * steps
    for _ in range(3 * steps):
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    # Fitted once: later epochs do not re-plan, and a spent budget stops the run.
    assert not trainer._budget_spent(0.0, [5.0, 15.0, 25.0, 35.0])
    assert config.epochs == 6
    trainer.history.append({"epoch": 4, "loss": 1.0, "val_miou": 0.1})
    assert trainer._budget_spent(0.0, [5.0, 15.0, 25.0, 35.0, 61.0])


@pytest.mark.parametrize("key", ["brightness", "contrast", "saturation", "blur_probability"])
def test_device_only_augmentations_need_data_on_device(key):
    with pytest.raises(ValueError, match=f"'{key}' needs data_on_device"):
        load_train_config(None, {key: 0.2})


def test_data_on_device_needs_frames_of_one_size(tiny_camvid, tmp_path):
    """The 4 CamVid frames share a size; a folder of mixed sizes needs base_size."""
    config = load_train_config(None, device_values(tiny_camvid, tmp_path, base_size=None))
    trainer = Trainer(config)
    assert trainer.device_frames.frame_size == (360, 480)


def test_cuda_graph_excludes_compile_and_needs_a_cuda_device(tiny_camvid, tmp_path):
    """CUDA graphs are captured on a GPU only (that path runs on a lent GPU, not here)."""
    with pytest.raises(ValueError, match="'cuda_graph' and 'compile' exclude each other"):
        load_train_config(None, {"cuda_graph": True, "compile": True})
    config = load_train_config(None, device_values(tiny_camvid, tmp_path, cuda_graph=True))
    with pytest.raises(ValueError, match="'cuda_graph' needs one process on a CUDA device"):
        Trainer(config)


def test_train_step_bench_times_every_option_against_fp32(tmp_path):
    """bench/train_step.py end to end at a toy size: a row per option, fp32 the reference."""
    import json
    import subprocess
    import sys

    from test_training import REPO_ROOT, SUBPROCESS_ENV

    report = tmp_path / "steps.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "train_step.py"), "--batch", "1", "--size",
         "32", "48", "--rounds", "1", "--steps", "1", "--json", str(report)],
        capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "machine:" in completed.stdout and "OMP_WAIT_POLICY" in completed.stdout
    options = json.loads(report.read_text())["options"]
    expected = {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    if not cpu_bf16_channels_last_gradients_are_right():  # left out, and it says why
        expected.remove("bf16+channels_last")
        assert "bf16+channels_last: left out: this PyTorch computes wrong gradients" in (
            completed.stdout)
    assert set(options) == expected
    assert options["fp32"]["ratio_to_reference"] == 1.0
    assert all(row["median_s"] > 0 for row in options.values())


def test_learning_bench_trains_each_setting_from_the_same_start(tiny_camvid, tmp_path):
    """bench/train_learning.py end to end on 4 frames: each setting trains from the recipe with
    only its keys changed, the second fp32 run with another seed, and the table compares them."""
    import json
    import subprocess
    import sys

    from test_training import REPO_ROOT, SUBPROCESS_ENV, write_yaml

    recipe = write_yaml(tmp_path / "recipe.yaml",
                        run_values(tiny_camvid, tmp_path / "unused", amp=True))
    report = tmp_path / "learning.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "train_learning.py"), "--recipe",
         str(recipe), "--epochs", "2", "--eval-every", "1", "--runs", "fp32", "fp32-seed2",
         "bf16", "--out", str(tmp_path / "runs"), "--json", str(report)],
        capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("machine:")
    assert "fp32 seed spread (noise): loss" in completed.stdout
    assert "bf16 - fp32: loss" in completed.stdout
    results = json.loads(report.read_text())
    assert list(results) == ["fp32", "fp32-seed2", "bf16"]
    configs = {}
    for name in results:
        payload = safe_load(tmp_path / "runs" / name / "last.pt")
        assert [record["epoch"] for record in payload["history"]] == [1, 2]
        assert all("val_miou" in record for record in payload["history"])
        configs[name] = payload["metadata"]["training"]["config"]
    assert (configs["fp32"]["amp"], configs["bf16"]["amp"]) == (False, True)
    assert configs["bf16"]["amp_dtype"] == "bfloat16"
    assert (configs["fp32"]["seed"], configs["fp32-seed2"]["seed"], configs["bf16"]["seed"]) == (
        7, 2, 7)
    # Only the setting changed: the runs differ, the data and start are the recipe's.
    assert results["fp32"]["history"][0]["loss"] != results["fp32-seed2"]["history"][0]["loss"]
    assert results["fp32"]["history"][0]["loss"] == pytest.approx(
        results["bf16"]["history"][0]["loss"], rel=0.05)
