"""Training on real CamVid frames: learning, exact resume, surviving SIGKILL, safe checkpoints,
DDP under torchrun, and the training config's validation.

Runs are tiny (4 frames, crops of 48x64) so the suite stays fast on two shared cores.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F

from fbsnet_ros import cli
from fbsnet_ros.checkpoint import CheckpointError, load_model, safe_load
from fbsnet_ros.data.classes import IGNORE_INDEX
from fbsnet_ros.training.config import TrainConfig, load_train_config
from fbsnet_ros.training.loop import Trainer, train, train_one_epoch
from fbsnet_ros.training.losses import OhemCrossEntropy, enet_class_weights
from fbsnet_ros.training.schedule import poly_with_warmup

TEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = TEST_DIR.parent
FRAMES = 4
# Subprocesses get one thread like this process (below): identical arithmetic, so their weights
# can be compared to 1e-6, and no oversubscription of shared CPUs.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny_camvid(camvid_root, tmp_path_factory) -> Path:
    """The first 4 CamVid train frames as train and val lists over links to the real folders."""
    root = tmp_path_factory.mktemp("camvid4")
    for folder in ("train", "trainannot"):
        (root / folder).symlink_to(camvid_root / folder, target_is_directory=True)
    pairs = (camvid_root / "train.txt").read_text().splitlines()[:FRAMES]
    (root / "train.txt").write_text("\n".join(pairs) + "\n")
    (root / "val.txt").write_text("\n".join(pairs) + "\n")
    # The same 4 frames 20 times: 20 steps per epoch, so few epochs (and checkpoints) are needed.
    (root / "repeated.txt").write_text("\n".join(pairs * 20) + "\n")
    return root


def run_values(data_root: Path, out_dir: Path, **overrides) -> dict:
    """A 3-epoch run of 4 steps (batch 1), with random scale, crop, flip and jitter."""
    values = {
        "dataset": "camvid", "data_root": str(data_root), "train_split": "train",
        "val_split": "val", "crop_size": [48, 64], "base_size": [72, 96],
        "scale_range": [0.75, 1.25], "input_size": [48, 64], "jitter": 0.1, "batch_size": 1,
        "epochs": 3, "lr": 1e-3, "warmup_epochs": 1, "class_weights": "enet", "eval_every": 2,
        "workers": 0, "amp": False, "device": "cpu", "seed": 7, "out_dir": str(out_dir)}
    values.update(overrides)
    return values


def run_config(data_root: Path, out_dir: Path, **overrides) -> TrainConfig:
    return load_train_config(None, run_values(data_root, out_dir, **overrides))


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def straight_run(tiny_camvid, tmp_path_factory) -> Path:
    """last.pt of the 3-epoch run done in one go, the reference for resumed runs."""
    out_dir = tmp_path_factory.mktemp("straight")
    with single_thread():  # module-scoped: set up before the autouse fixture
        train(run_config(tiny_camvid, out_dir))
    return out_dir / "last.pt"


def assert_same_training_state(actual: dict, expected: dict, tolerance: float = 1e-6) -> None:
    assert actual["epoch"] == expected["epoch"]
    assert actual["state_dict"].keys() == expected["state_dict"].keys()
    for name, tensor in expected["state_dict"].items():
        difference = (actual["state_dict"][name].double() - tensor.double()).abs().max()
        assert difference <= tolerance, f"{name} differs by {float(difference):.3g}"
    for key, state in expected["optimizer"]["state"].items():
        for slot in ("exp_avg", "exp_avg_sq"):
            difference = (actual["optimizer"]["state"][key][slot] - state[slot]).abs().max()
            assert difference <= tolerance, f"optimizer {key}.{slot} differs"
    assert actual["scheduler"]["last_epoch"] == expected["scheduler"]["last_epoch"]
    assert [r["loss"] for r in actual["history"]] == pytest.approx(
        [r["loss"] for r in expected["history"]], abs=tolerance)


# --- learning ------------------------------------------------------------------------------

def test_a_few_steps_on_real_frames_reduce_the_loss(tiny_camvid, tmp_path):
    """Ten Adam steps on one batch of the 4 frames, measured in train mode (batch statistics)."""
    # Many epochs, so that the poly schedule keeps the lr near its base value for these steps.
    trainer = Trainer(run_config(tiny_camvid, tmp_path, lr=5e-3, warmup_epochs=0, batch_size=4,
                                 scale_range=[1.0, 1.0], jitter=0.0, epochs=100))
    batch = next(iter(trainer._loader(0)))
    assert batch[0].shape == (4, 3, 48, 64) and batch[1].shape == (4, 48, 64)

    def batch_loss() -> float:
        with torch.no_grad():
            return float(trainer.criterion(trainer.model(batch[0]), batch[1]))

    trainer.model.train()
    before = batch_loss()
    train_one_epoch(trainer.model, [batch] * 10, trainer.criterion, trainer.optimizer,
                    trainer.scheduler, trainer.scaler, trainer.device, show_progress=False)
    after = batch_loss()
    assert after < 0.9 * before, (before, after)  # measured: 2.45 -> 1.9


def test_overfitting_four_frames_reaches_high_miou(tiny_camvid, tmp_path):
    # 80 steps of whole frames at 48x64 (4 epochs of 20). Measured here: 67 % mIoU against the
    # full-size 360x480 labels (75-80 % after 100 steps, 20-30 % after 40).
    config = run_config(tiny_camvid, tmp_path, train_split="repeated", base_size=[48, 64],
                        scale_range=[1.0, 1.0], jitter=0.0, batch_size=4, epochs=4, lr=5e-3,
                        warmup_epochs=0, eval_every=100)
    summary = train(config)
    assert summary["epochs"] == 4
    assert summary["best_val_miou"] > 0.5, summary
    _, metadata = load_model(tmp_path / "best.pt")
    assert metadata.input_size == (48, 64)
    assert metadata.training["best_val_miou"] == summary["best_val_miou"]
    assert metadata.training["config"]["lr"] == 5e-3 and metadata.seed == 7


# --- resume, SIGKILL, checkpoints ----------------------------------------------------------

def test_resume_gives_the_same_weights_as_one_straight_run(tiny_camvid, straight_run, tmp_path):
    # In-process, so no DataLoader workers: forking this long-lived test process, which by now
    # holds DDS, OpenVINO and ONNX Runtime threads, crashed the suite once (SIGSEGV).
    config = run_config(tiny_camvid, tmp_path)
    first = train(config, stop_after_epochs=2)
    assert first["epochs"] == 2
    assert safe_load(tmp_path / "last.pt")["epoch"] == 2
    second = train(config)  # resumes from last.pt
    assert second["epochs"] == 3
    assert_same_training_state(safe_load(tmp_path / "last.pt"), safe_load(straight_run))


def _start_training(config_path: Path, log_path: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("fbsnet-ros")), "train", "--config",
               str(config_path)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                env=SUBPROCESS_ENV)


def _orphan_checkpoint_write(target: Path) -> None:
    """What SIGKILL between atomic_save's write and its rename leaves: a temporary file."""
    script = (
        "import os, signal, sys, torch\n"
        "from fbsnet_ros import checkpoint\n"
        "checkpoint.os.replace = lambda *paths: os.kill(os.getpid(), signal.SIGKILL)\n"
        "checkpoint.atomic_save({'partial': torch.zeros(3)}, sys.argv[1])\n")
    done = subprocess.run([sys.executable, "-c", script, str(target)], env=SUBPROCESS_ENV,
                          check=False)
    assert done.returncode == -signal.SIGKILL


def test_sigkill_mid_epoch_resumes_losing_at_most_one_epoch(tiny_camvid, straight_run,
                                                            tmp_path):
    out_dir = tmp_path / "run"
    config_path = write_yaml(tmp_path / "train.yaml", run_values(tiny_camvid, out_dir))
    log_path = tmp_path / "train.log"
    process = _start_training(config_path, log_path)
    last = out_dir / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert last.exists(), log_path.read_text()
    time.sleep(0.1)  # into the second epoch (4 steps of 0.1-0.2 s each)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL

    killed_at = safe_load(last)["epoch"]  # whatever the kill interrupted, last.pt loads
    assert killed_at in (1, 2), "the run was not killed mid-run"
    _orphan_checkpoint_write(last)
    assert len(list(out_dir.glob(".last.pt.*"))) >= 1
    assert safe_load(last)["epoch"] == killed_at  # the interrupted write left last.pt intact

    resumed = _start_training(config_path, log_path)
    assert resumed.wait(timeout=300) == 0, log_path.read_text()
    log = log_path.read_text()
    assert f"resumed from {last} at epoch {killed_at}" in log
    assert "removed" in log and "unfinished checkpoint write" in log
    assert not list(out_dir.glob(".*.pt.*")), "temporary checkpoint files remain"
    final = safe_load(last)
    assert [record["epoch"] for record in final["history"]] == [1, 2, 3]
    # Lost work is redone identically: the result equals the uninterrupted run.
    assert_same_training_state(final, safe_load(straight_run))


def test_training_and_inference_checkpoints_load_with_weights_only(straight_run,
                                                                   random_checkpoint):
    payload = torch.load(straight_run, map_location="cpu", weights_only=True)
    assert {"format", "kind", "metadata", "state_dict", "optimizer", "scheduler", "scaler",
            "epoch", "best_miou", "history", "rng"} <= set(payload)
    assert payload["kind"] == "training"
    _, metadata = load_model(straight_run)
    assert metadata.class_names[0] == "Sky" and metadata.input_size == (48, 64)
    assert metadata.training["config"]["seed"] == 7
    assert torch.load(random_checkpoint, map_location="cpu", weights_only=True)["kind"] == \
        "inference"
    load_model(random_checkpoint)


class CreatesFile:
    """Unpickling this calls open(path, "w"): a pickle that runs code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_never_runs(tiny_camvid, tmp_path):
    victim = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"weight": CreatesFile(victim)}, "metadata": {}}, evil)
    # The file is a real exploit: a plain (unsafe) load runs it.
    torch.load(evil, weights_only=False)
    assert victim.exists()
    victim.unlink()

    with pytest.raises(CheckpointError, match=f"{evil}: refused.*could run code"):
        safe_load(evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(evil)
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "last.pt").write_bytes(evil.read_bytes())
    trainer = Trainer(run_config(tiny_camvid, out_dir, class_weights="none"))
    with pytest.raises(CheckpointError, match="last.pt: refused"):
        trainer.resume()
    with pytest.raises(CheckpointError, match="refused"):
        Trainer(run_config(tiny_camvid, tmp_path / "other", init_weights=str(evil)))
    assert not victim.exists()


# --- distributed ---------------------------------------------------------------------------

def _torchrun(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--standalone", *arguments]
    return subprocess.run(command, cwd=REPO_ROOT, env=SUBPROCESS_ENV, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_ddp_gradients_equal_one_process_on_the_combined_batch(tmp_path):
    result_path = tmp_path / "gradients.json"
    done = _torchrun(str(TEST_DIR / "ddp_gradients.py"), str(result_path))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(result_path.read_text())
    assert result["world_size"] == 2 and result["rank_samples"] == 2
    assert result["max_abs_gradient"] > 1e-3  # gradients are not trivially zero
    assert result["max_abs_difference"] <= 1e-6 * max(1.0, result["max_abs_gradient"]), result


def test_train_command_under_torchrun_trains_and_checkpoints(tiny_camvid, tmp_path):
    out_dir = tmp_path / "ddp"
    config_path = write_yaml(tmp_path / "train.yaml",
                             run_values(tiny_camvid, out_dir, epochs=1))
    done = _torchrun("-m", "fbsnet_ros.cli", "train", "--config", str(config_path))
    assert done.returncode == 0, done.stdout + done.stderr
    checkpoint = safe_load(out_dir / "last.pt")
    assert checkpoint["epoch"] == 1
    # Each of the 2 ranks took 2 of the 4 frames: 2 optimiser steps, not 4.
    assert checkpoint["scheduler"]["last_epoch"] == 2
    assert len(checkpoint["history"]) == 1 and "val_miou" in checkpoint["history"][0]
    load_model(out_dir / "best.pt")
    assert not list(out_dir.glob(".*.pt.*"))


# --- training config -----------------------------------------------------------------------

def test_unknown_config_key_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown training config key.*: batchsize"):
        load_train_config(None, {"batchsize": 4})
    recipe = write_yaml(tmp_path / "recipe.yaml", {"lr": 0.01, "learning_rate": 0.01})
    with pytest.raises(ValueError, match="unknown training config key.*: learning_rate"):
        load_train_config(recipe)


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", "four", "'batch_size' expects a number"),
    ("batch_size", "2.5", "'batch_size' expects an integer"),
    ("batch_size", True, "'batch_size' expects a number"),
    ("lr", "fast", "'lr' expects a number"),
    ("amp", "maybe", "'amp' expects true or false"),
    ("crop_size", "[360]", "'crop_size' expects a list of 2 integers"),
    ("crop_size", "[a, b]", "'crop_size' expects a list of 2 integers"),
    ("dataset", "[camvid]", "'dataset' expects text"),
    ("dataset", "coco", "'dataset' must be one of camvid, cityscapes, folder"),
    ("crop_size", "[100, 100]", "'crop_size' must be positive multiples of 8"),
    ("scale_range", "[2.0, 0.5]", "'scale_range' must be 0 < low <= high"),
])
def test_bad_config_value_names_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(None, {key: value})


def test_config_overrides_parse_like_yaml():
    config = load_train_config(REPO_ROOT / "config" / "train" / "camvid.yaml",
                               {"lr": "1e-3", "base_size": "[180, 240]", "amp": "false",
                                "epochs": "3"})
    assert config.lr == 1e-3 and config.base_size == (180, 240)
    assert config.amp is False and config.epochs == 3
    assert load_train_config(None, {"base_size": "null"}).base_size is None


@pytest.mark.parametrize("recipe", ["camvid.yaml", "cityscapes.yaml", "camvid_cpu.yaml",
                                    "camvid_cpu_finetune.yaml", "camvid_cpu_campaign.yaml",
                                    "camvid_gpu.yaml",
                                    "camvid_gpu_finetune.yaml"])
def test_shipped_recipes_load(recipe):
    from fbsnet_ros.training.loop import check_runs_here

    config = load_train_config(REPO_ROOT / "config" / "train" / recipe)
    assert config.out_dir.startswith("runs/")
    if config.device == "cpu":  # the CPU recipes run on any CPU (no refused precision)
        check_runs_here(config, torch.device("cpu"))


def test_train_command_reports_a_bad_key_in_one_line(capsys):
    status = cli.main(["train", "--config", str(REPO_ROOT / "config" / "train" / "camvid.yaml"),
                       "--batchsize", "4"])
    assert status == cli.EXIT_USER_ERROR
    error = capsys.readouterr().err.strip()
    assert error == "fbsnet-ros train: error: unknown training config key(s): batchsize"


def test_a_recipe_this_cpu_would_train_wrongly_is_refused_in_one_line(monkeypatch, capsys):
    import fbsnet_ros.training.loop as loop

    monkeypatch.setattr(loop, "cpu_bf16_channels_last_gradients_are_right", lambda: False)
    status = cli.main(["train", "--config", str(REPO_ROOT / "config" / "train" / "camvid.yaml"),
                       "--device", "cpu", "--amp", "true", "--amp_dtype", "bfloat16",
                       "--channels_last", "true"])
    assert status == cli.EXIT_USER_ERROR
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'channels_last'" in line and "wrong gradients" in line


@pytest.mark.parametrize(("amp", "channels_last"), [(False, True), (True, False), (True, True)])
def test_cpu_training_precisions_compute_the_depthwise_gradients(amp, channels_last):
    """What a CPU recipe may run gives fp32's weight gradients for every depth-wise conv shape
    of FBSNet at a 360x480 crop, to bf16 rounding. torch 2.13's bf16 + channels_last CPU kernel
    gets them wrong for dilations >= 2 on some CPUs (this project's AMD EPYC): training
    refuses that setting there, and this checks it wherever it runs."""
    from fbsnet_ros.model import FBSNetConfig
    from fbsnet_ros.training.loop import (
        check_runs_here,
        cpu_bf16_channels_last_gradients_are_right,
        depthwise_weight_gradient,
    )

    config = TrainConfig(device="cpu", amp=amp, amp_dtype="bfloat16", channels_last=channels_last)
    if amp and channels_last and not cpu_bf16_channels_last_gradients_are_right():
        with pytest.raises(ValueError, match="'channels_last'"):
            check_runs_here(config, torch.device("cpu"))
        return
    generator = torch.Generator().manual_seed(0)
    stages = FBSNetConfig().encoder  # half-width depth-wise convs at 1/2, 1/4 and 1/8 of 360x480
    for stage, (height, width) in zip(stages, [(180, 240), (90, 120), (45, 60)], strict=True):
        half = stage.channels // 2
        frames = torch.randn(2, half, height, width, generator=generator).bfloat16().float()
        for dilation in sorted(set(stage.dilations)):
            for kernel, along in (((3, 1), (dilation, 1)), ((1, 3), (1, dilation))):
                weight = torch.randn(half, 1, *kernel, generator=generator)
                reference = depthwise_weight_gradient(weight, frames, along, bf16=False,
                                                      channels_last=False)
                tested = depthwise_weight_gradient(weight, frames, along, bf16=amp,
                                                   channels_last=channels_last)
                error = float((tested - reference).norm() / reference.norm())
                assert error < (0.02 if amp else 1e-4), (stage.channels, dilation, kernel, error)


def test_a_compiled_bf16_step_computes_the_depthwise_gradients(monkeypatch):
    """torch.compile moves convolutions to channels_last by itself (inductor's layout
    optimisation), which gave the wrong bf16 kernel back; compiled_for_training keeps the
    compiled step right. One small dilated conv: seconds of compiling, not FBSNet's minutes."""
    import torch._inductor.config as inductor_config

    from fbsnet_ros.training.loop import compiled_for_training

    monkeypatch.setattr(inductor_config, "layout_optimization",
                        inductor_config.layout_optimization)  # restored after the test
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(32, 32, 3, padding=1, bias=False),
        torch.nn.Conv2d(32, 32, (3, 1), padding=(2, 0), dilation=(2, 1), groups=32, bias=False))
    frames = torch.randn(2, 32, 45, 60, generator=generator)

    def depthwise_gradient(forward, bf16: bool) -> torch.Tensor:
        conv.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(frames)
        out.float().pow(2).sum().backward()
        return conv[1].weight.grad.clone()

    reference = depthwise_gradient(conv, bf16=False)
    compiled = compiled_for_training(conv, torch.device("cpu"), torch.bfloat16)
    tested = depthwise_gradient(compiled, bf16=True)
    assert float((tested - reference).norm() / reference.norm()) < 0.02


# --- losses and schedule -------------------------------------------------------------------

def _logits_for(probabilities: list[float]) -> torch.Tensor:
    """Two-class logits (1, 2, 1, N) whose class-0 probabilities are the given ones."""
    p = torch.tensor(probabilities, dtype=torch.float64)
    return torch.stack([torch.log(p), torch.log(1 - p)]).view(1, 2, 1, -1)


def test_ohem_keeps_hard_pixels_but_at_least_min_kept():
    logits = _logits_for([0.9, 0.6, 0.3, 0.95, 0.5])
    target = torch.tensor([[[0, 0, 0, 0, IGNORE_INDEX]]])
    easy_dropped = OhemCrossEntropy(threshold=0.7, min_kept=1)(logits, target)
    assert float(easy_dropped) == pytest.approx(-(math.log(0.6) + math.log(0.3)) / 2)
    # min_kept 3 raises the threshold to the 3rd smallest probability, 0.9.
    at_least_three = OhemCrossEntropy(threshold=0.7, min_kept=3)(logits, target)
    assert float(at_least_three) == pytest.approx(
        -(math.log(0.9) + math.log(0.6) + math.log(0.3)) / 3)


def test_ohem_keeping_everything_is_weighted_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=generator)
    target = torch.randint(0, 3, (2, 4, 5), generator=generator)
    target[0, 0] = IGNORE_INDEX
    weight = torch.tensor([0.5, 2.0, 1.0])
    ohem = OhemCrossEntropy(threshold=1.0, min_kept=0, weight=weight)
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX)
    assert float(ohem(logits, target)) == pytest.approx(float(expected), rel=1e-6)


def test_enet_class_weights_from_label_frequencies():
    labels = [np.array([[0, 0, 0, 1]], dtype=np.uint8),
              np.array([[IGNORE_INDEX, 7]], dtype=np.uint8)]  # ignored and out-of-range values
    weights = enet_class_weights(labels, num_classes=3)
    expected = [1 / math.log(1.02 + 0.75), 1 / math.log(1.02 + 0.25), 1 / math.log(1.02)]
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)


def test_poly_schedule_with_linear_warmup():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = poly_with_warmup(optimizer, total_steps=10, warmup_steps=2, power=0.9,
                                 warmup_ratio=0.1)
    factors = []
    for _ in range(11):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert factors[:3] == pytest.approx([0.1, 0.55, 0.8 ** 0.9])
    assert factors[5] == pytest.approx(0.5 ** 0.9)
    assert factors[10] == 0.0
