"""The training loop: one process or many (torchrun), exact resume, last and best checkpoints."""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fbsnet_ros.checkpoint import (
    CHECKPOINT_FORMAT,
    ModelMetadata,
    atomic_save,
    load_model,
    safe_load,
)
from fbsnet_ros.data.classes import IMAGENET_MEAN, IMAGENET_STD
from fbsnet_ros.data.datasets import SegmentationDataset, build_dataset
from fbsnet_ros.data.transforms import EvalTransform, TrainTransform
from fbsnet_ros.devices import resolve_device
from fbsnet_ros.evaluation.metrics import ConfusionMatrix
from fbsnet_ros.model import NAMED_CONFIGS, FBSNet
from fbsnet_ros.training.config import TrainConfig
from fbsnet_ros.training.curves import CURVE_FILE, plot_training_curve
from fbsnet_ros.training.device_data import BatchAugment, DeviceFrames, Photometric, device_batches
from fbsnet_ros.training.losses import build_loss, enet_class_weights
from fbsnet_ros.training.schedule import poly_with_warmup

log = logging.getLogger(__name__)


class AugmentedDataset(Dataset):
    """Draws each sample's augmentation from (seed, epoch, index): replayable after a resume."""

    def __init__(self, base: SegmentationDataset, transform: TrainTransform, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base.load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.transform(image, label, rng)


def remove_stale_temporaries(out_dir: Path, names=("last.pt", "best.pt")) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a killed run never renamed.

    atomic_save writes `.<name>.<random>` beside the target and renames it; a process killed
    in between leaves the temporary behind, never a half-written `<name>`.
    """
    removed = []
    for name in names:
        for stale in out_dir.glob(f".{name}.*"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    if removed:
        log.info("removed %d unfinished checkpoint write(s) in %s", len(removed), out_dir)
    return removed


def adam(params, device: torch.device, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam as training uses it: fused (one kernel updates every tensor) on CUDA and the CPU.
    FBSNet has ~600 small tensors; the default multi-tensor update took 19 ms of a 200 ms
    training step on an H200 (issue 14's profile)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay,
                            fused=device.type in ("cuda", "cpu"))


def distributed_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP as the training loop uses it: gradients averaged over ranks during backward."""
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


@functools.cache
def cpu_bf16_channels_last_gradients_are_right() -> bool:
    """Whether this PyTorch and CPU compute the weight gradient of a dilated depth-wise conv
    right under bfloat16 autocast with channels_last.

    torch 2.13's CPU kernel gets it wrong for FBSNet's (3, 1) depth-wise convs with dilation
    >= 2 (relative error ~1 at dilation 2-9; garbage, NaN or a crash at 17, measured on an AMD
    EPYC with avx512_bf16): a bf16 + channels_last run trained on wrong gradients. Checked on one
    small conv against fp32 (~15 ms), so a fixed PyTorch is used again without a change here.
    """
    # FBSNet's sizes: 32 channels at 1/8 of a 360x480 crop (smaller maps take another kernel,
    # which is right).
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 1, 3, 1, generator=generator)
    frames = torch.randn(2, 32, 45, 60, generator=generator).bfloat16().float()
    reference = depthwise_weight_gradient(weight, frames, (2, 1), bf16=False, channels_last=False)
    tested = depthwise_weight_gradient(weight, frames, (2, 1), bf16=True, channels_last=True)
    return bool((tested - reference).abs().max() <= 0.05 * reference.abs().max())


def depthwise_weight_gradient(weight: torch.Tensor, frames: torch.Tensor,
                              dilation: tuple[int, int], *, bf16: bool,
                              channels_last: bool) -> torch.Tensor:
    """The weight gradient of sum(out^2) for a depth-wise conv (FBSNet's padding) on the CPU."""
    channels, _, kernel_h, kernel_w = weight.shape
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(channels, channels, (kernel_h, kernel_w), dilation=dilation, groups=channels,
                     padding=(dilation[0] * (kernel_h // 2), dilation[1] * (kernel_w // 2)),
                     bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    conv = conv.to(memory_format=layout)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = conv(frames.contiguous(memory_format=layout))
    out.float().pow(2).sum().backward()
    return conv.weight.grad


def compiled_for_training(model: nn.Module, device: torch.device,
                          amp_dtype: torch.dtype | None) -> nn.Module:
    """torch.compile of the training forward, kept off the wrong kernel above.

    Inductor's layout optimisation moves convolutions to channels_last by itself, so a compiled
    bf16 step on a CPU where that kernel is wrong computed the same wrong depth-wise gradients
    (relative error ~1 at dilation 2, a crash at 17, torch 2.13 on an AMD EPYC). There it is
    turned off for this process, and the compiled step keeps the contiguous layout.
    """
    if (device.type == "cpu" and amp_dtype == torch.bfloat16
            and not cpu_bf16_channels_last_gradients_are_right()):
        import torch._inductor.config as inductor_config

        inductor_config.layout_optimization = False
    return torch.compile(model)


def check_runs_here(config: TrainConfig, device: torch.device) -> None:
    """Refuse a recipe this device would train wrongly or cannot run (ValueError: one line)."""
    if config.cuda_graph and (device.type != "cuda" or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        raise ValueError("training config 'cuda_graph' needs one process on a CUDA device")
    if (device.type == "cpu" and config.channels_last
            and autocast_dtype(config, device) == torch.bfloat16
            and not cpu_bf16_channels_last_gradients_are_right()):
        raise ValueError(
            "training config 'channels_last': this PyTorch computes wrong gradients for dilated "
            "depth-wise convolutions under bfloat16 autocast with channels_last on this CPU; "
            "set channels_last: false (bf16 alone is right) or amp: false")


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run uses, or None for fp32 (float16 autocast is CUDA only)."""
    if not config.amp:
        return None
    if config.amp_dtype == "bfloat16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def graph_training_model(model: nn.Module, sample_images: torch.Tensor,
                         amp_dtype: torch.dtype | None) -> nn.Module:
    """Make `model`'s training forward and backward replay CUDA graphs; returns `model`.

    FBSNet's ~2000 small kernels a training step leave a GPU waiting on the CPU's launches;
    a graph replays them in one launch each way (torch.cuda.make_graphed_callables). Batches
    must have `sample_images`' shape, dtype and memory format. In eval mode the model runs
    its eager forward (validation, export). The warm-up passes on `sample_images` would move
    the BatchNorm statistics; they are put back.
    """
    saved_buffers = [buffer.clone() for buffer in model.buffers()]
    model.train()
    # make_graphed_callables refuses autocast's weight-cast cache; the graph keeps the casts.
    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None,
                        cache_enabled=False):
        torch.cuda.make_graphed_callables(model, (sample_images,))
    with torch.no_grad():
        for buffer, saved in zip(model.buffers(), saved_buffers, strict=True):
            buffer.copy_(saved)
    return model


def train_one_epoch(model, batches, criterion, optimizer, scheduler, scaler, device,
                    max_steps: int = 0, show_progress: bool = True,
                    amp_dtype: torch.dtype | None = None, channels_last: bool = False,
                    total: int | None = None) -> float:
    """One pass over `batches` (a DataLoader or on-device batches); returns the mean loss."""
    model.train()
    # Summed on the device: a .item() per step would wait for the GPU every step.
    loss_sum, steps = torch.zeros((), device=device), 0
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in tqdm(batches, total=total, leave=False, disable=not show_progress,
                               desc="train"):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = criterion(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.detach()
        steps += 1
        if max_steps and steps >= max_steps:
            break
    return float(loss_sum) / max(steps, 1)


@torch.inference_mode()
def evaluate(model: nn.Module, dataset: SegmentationDataset, device: torch.device,
             show_progress: bool = True) -> ConfusionMatrix:
    """Whole frames at the model's input size, logits upsampled to the labels' full size."""
    model.eval()
    confusion = ConfusionMatrix(len(dataset.class_names))
    for index in tqdm(range(len(dataset)), leave=False, disable=not show_progress, desc="val"):
        image, label = dataset[index]
        logits = model(image.unsqueeze(0).to(device))
        logits = F.interpolate(logits.float(), size=label.shape, mode="bilinear",
                               align_corners=False)
        confusion.update(label.to(device, non_blocking=True), logits.argmax(1))
    return confusion


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Owns the model, optimiser and data of one run; `fit` resumes from out_dir/last.pt."""

    def __init__(self, config: TrainConfig) -> None:
        config.validate()
        self.config = config
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = resolve_device(config.device)
        if self.distributed:
            self._init_distributed()
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        check_runs_here(config, self.device)
        self.out_dir = Path(config.out_dir)
        if self.rank == 0:
            remove_stale_temporaries(self.out_dir)
        torch.manual_seed(config.seed)
        if self.device.type == "cuda":
            # Crops have one size: let cuDNN time its kernels once for each convolution.
            torch.backends.cudnn.benchmark = True

        train_base = build_dataset(config, config.train_split, cache=config.cache)
        # Workers are forked each epoch: frames cached before that are shared, later ones lost.
        train_base.preload()
        self.class_names, self.palette = train_base.class_names, train_base.palette
        transform = TrainTransform(config.crop_size, IMAGENET_MEAN, IMAGENET_STD,
                                   base_size=config.base_size, scale_range=config.scale_range,
                                   jitter=config.jitter)
        self.train_set = AugmentedDataset(train_base, transform, config.seed)
        self.val_set = build_dataset(config, config.val_split, cache=config.cache,
                                     transform=EvalTransform(config.input_size, IMAGENET_MEAN,
                                                             IMAGENET_STD))
        self.device_frames = self.batch_augment = None
        if config.data_on_device:
            self._init_device_data(train_base)
        self.model = self._build_model().to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = autocast_dtype(config, self.device)
        # The compiled module shares the parameters; checkpoints and validation use the model.
        self.train_model = (compiled_for_training(self.model, self.device, self.amp_dtype)
                            if config.compile else self.model)
        if config.cuda_graph:
            self._graph_training_step()
        self.criterion = self._build_loss(train_base).to(self.device)
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best_miou, self.history = 0, -1.0, []
        # Whether the epochs were already fitted to time_budget_minutes (once per run).
        self.budget_fitted = False

    def _init_device_data(self, train_base: SegmentationDataset) -> None:
        if self.distributed:
            raise ValueError("training config 'data_on_device' runs in one process; "
                             "drop it under torchrun")
        config = self.config
        self.device_frames = DeviceFrames(train_base, self.device, config.base_size)
        photometric = Photometric(config.brightness, config.contrast, config.saturation,
                                  channel_gain=config.jitter,
                                  blur_probability=config.blur_probability)
        self.batch_augment = BatchAugment(config.crop_size, IMAGENET_MEAN, IMAGENET_STD,
                                          scale_range=config.scale_range,
                                          photometric=photometric)

    def _graph_training_step(self) -> None:
        """Capture the training forward and backward for batches of the recipe's shape."""
        config = self.config
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        # Its own generator: the sample must not move the run's random streams.
        generator = torch.Generator(self.device).manual_seed(config.seed)
        sample = torch.randn(config.batch_size, 3, *config.crop_size, device=self.device,
                             generator=generator).contiguous(memory_format=memory_format)
        graph_training_model(self.model, sample, self.amp_dtype)

    def _build_scheduler(self, current_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
        """Poly decay over `config.epochs`; `current_step` > 0 rebuilds it mid-run."""
        config, steps_per_epoch = self.config, self._steps_per_epoch()
        return poly_with_warmup(
            self.optimizer, total_steps=config.epochs * steps_per_epoch,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch), power=config.poly_power,
            warmup_ratio=config.warmup_ratio, last_step=current_step)

    def _init_distributed(self) -> None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)

    def _build_model(self) -> nn.Module:
        config = NAMED_CONFIGS[self.config.variant](num_classes=len(self.class_names))
        model = FBSNet(config=config)
        if self.config.init_weights:
            source, _ = load_model(self.config.init_weights)
            model.load_state_dict(source.state_dict())
        if self.distributed and self.config.sync_bn and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def _build_loss(self, train_base: SegmentationDataset) -> nn.Module:
        weight = None
        if self.config.class_weights == "enet":
            labels = (train_base.load_label(i) for i in range(len(train_base)))
            weight = enet_class_weights(labels, len(self.class_names))
        return build_loss(self.config.loss, weight, self.config.ohem_threshold,
                          self.config.ohem_min_kept)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        params, config = self.model.parameters(), self.config
        if config.optimizer == "adam":
            return adam(params, self.device, config.lr, config.weight_decay)
        if config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay)
        raise ValueError(
            f"training config 'optimizer' must be adam or sgd, got {config.optimizer!r}")

    def _steps_per_epoch(self) -> int:
        world = torch.distributed.get_world_size() if self.distributed else 1
        # DistributedSampler(drop_last=True) gives every rank floor(len / world) samples.
        per_rank = len(self.train_set) // world
        steps = per_rank // self.config.batch_size
        if self.config.max_steps_per_epoch:
            steps = min(steps, self.config.max_steps_per_epoch)
        return max(steps, 1)

    def _batches(self, epoch: int):
        """This epoch's training batches: on-device ones, or a DataLoader over the workers."""
        if self.device_frames is not None:
            return device_batches(self.device_frames, self.batch_augment, self.config.batch_size,
                                  self.config.seed, epoch, self.config.max_steps_per_epoch)
        return self._loader(epoch)

    def _loader(self, epoch: int) -> DataLoader:
        self.train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        sampler = None
        if self.distributed:
            sampler = torch.utils.data.DistributedSampler(self.train_set, seed=self.config.seed,
                                                          drop_last=True)
            sampler.set_epoch(epoch)
        return DataLoader(self.train_set, batch_size=self.config.batch_size,
                          shuffle=sampler is None, sampler=sampler, generator=generator,
                          num_workers=self.config.workers, drop_last=True,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            config=self._bare_model().config, class_names=self.class_names, palette=self.palette,
            mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=tuple(self.config.input_size),
            dataset=self.config.dataset, seed=self.config.seed,
            training={"config": self.config.to_dict(), "best_val_miou": self.best_miou,
                      "epochs_done": self.start_epoch, "history": self.history})

    def _bare_model(self) -> FBSNet:
        return self.model.module if hasattr(self.model, "module") else self.model

    def save(self, name: str) -> None:
        bare = self._bare_model()
        state = {key: value.detach().cpu() for key, value in bare.state_dict().items()}
        atomic_save({
            "format": CHECKPOINT_FORMAT, "kind": "training",
            "metadata": self.metadata().to_dict(), "state_dict": state,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": self.start_epoch,
            "best_miou": self.best_miou, "history": self.history, "rng": _rng_state(),
            "planned_epochs": self.config.epochs, "budget_fitted": self.budget_fitted,
        }, self.out_dir / name)

    def resume(self) -> bool:
        last = self.out_dir / "last.pt"
        if not last.is_file():
            return False
        payload = safe_load(last)
        self._bare_model().load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(payload["scaler"])
        else:
            log.warning("%s was written without AMP; the gradient scaler starts afresh", last)
        planned = int(payload.get("planned_epochs", self.config.epochs))
        self.budget_fitted = bool(payload.get("budget_fitted", False))
        if self.budget_fitted and planned != self.config.epochs:
            # The schedule was fitted to a time budget: keep that plan, not the recipe's.
            self.config.epochs = planned
            self.scheduler = self._build_scheduler()
            self.scheduler.load_state_dict(payload["scheduler"])
        self.start_epoch = int(payload["epoch"])
        self.best_miou = float(payload["best_miou"])
        self.history = list(payload["history"])
        _restore_rng(payload["rng"])
        log.info("resumed from %s at epoch %d", last, self.start_epoch)
        return True

    def fit(self, stop_after_epochs: int | None = None) -> dict:
        """Train from `start_epoch` to `config.epochs`, or for at most `stop_after_epochs` now."""
        config = self.config
        if self.distributed:
            self.model = self.train_model = distributed_model(self.model, self.device)
        writer = self._summary_writer()
        started = time.time()
        epoch_ends: list[float] = []
        epoch = self.start_epoch
        first_epoch = self.start_epoch
        while epoch < self._final_epoch(first_epoch, stop_after_epochs):
            loss = train_one_epoch(self.train_model, self._batches(epoch), self.criterion,
                                   self.optimizer, self.scheduler, self.scaler, self.device,
                                   config.max_steps_per_epoch, show_progress=self.rank == 0,
                                   amp_dtype=self.amp_dtype, channels_last=config.channels_last,
                                   total=self._steps_per_epoch())
            self._end_epoch(epoch, self._mean_over_ranks(loss), writer)
            epoch += 1
            epoch_ends.append(time.time())
            if config.time_budget_minutes > 0 and self._budget_spent(started, epoch_ends):
                break
        if writer is not None:
            writer.close()
        summary = {"epochs": self.start_epoch, "planned_epochs": config.epochs,
                   "best_val_miou": self.best_miou,
                   "minutes_this_run": (time.time() - started) / 60.0,
                   "checkpoint": str(self.out_dir / "best.pt")}
        if self.distributed:
            torch.distributed.destroy_process_group()
        return summary

    def _final_epoch(self, first_epoch: int, stop_after_epochs: int | None) -> int:
        if stop_after_epochs is None:
            return self.config.epochs
        return min(self.config.epochs, first_epoch + stop_after_epochs)

    def _budget_spent(self, started: float, epoch_ends: list[float]) -> bool:
        """Fit the epochs to the time budget once, then stop when the budget is spent.

        The fit waits for three epochs of this run and one validation, so that the first
        epoch's warm-up (cuDNN autotuning, compilation) is left out of the per-epoch time and
        the validations' cost is in.
        """
        config = self.config
        budget = config.time_budget_minutes * 60.0
        elapsed = epoch_ends[-1] - started
        if elapsed >= budget:
            log.info("time budget of %.1f min spent after epoch %d", config.time_budget_minutes,
                     self.start_epoch)
            if "val_miou" not in self.history[-1]:
                self._validate_and_save(self.history[-1])
            return True
        validated = any("val_miou" in record for record in self.history[-len(epoch_ends):])
        if self.budget_fitted or len(epoch_ends) < 3 or not validated:
            return False
        per_epoch = (epoch_ends[-1] - epoch_ends[0]) / (len(epoch_ends) - 1)
        # 3 % slack for the final validation and checkpoint writes.
        fitting = int((budget - elapsed) * 0.97 / per_epoch)
        planned = min(config.epochs, self.start_epoch + max(fitting, 0))
        self.budget_fitted = True
        if planned < config.epochs:
            log.info("time budget %.1f min at %.2f s an epoch: %d epochs instead of %d, the "
                     "poly schedule decays over them", config.time_budget_minutes, per_epoch,
                     planned, config.epochs)
            config.epochs = max(planned, self.start_epoch + 1)
            self.scheduler = self._build_scheduler(current_step=self.scheduler.last_epoch)
        return False

    def _mean_over_ranks(self, value: float) -> float:
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(tensor)
        return float(tensor) / torch.distributed.get_world_size()

    def _end_epoch(self, epoch: int, loss: float, writer) -> None:
        """Validate when due, then checkpoint: rank 0 works while the others wait."""
        config = self.config
        record = {"epoch": epoch + 1, "loss": loss, "lr": self.scheduler.get_last_lr()[0]}
        last_epoch = epoch + 1 == config.epochs
        self.start_epoch = epoch + 1
        self.history.append(record)
        if self.rank == 0:
            if (epoch + 1) % config.eval_every == 0 or last_epoch:
                self._validate_and_save(record, writer)
            else:
                self.save("last.pt")
            log.info("epoch %d/%d loss %.4f lr %.2e%s", epoch + 1, config.epochs, loss,
                     record["lr"], f" val mIoU {100 * record['val_miou']:.2f}%"
                     if "val_miou" in record else "")
        if self.distributed:
            torch.distributed.barrier()

    def _validate_and_save(self, record: dict, writer=None) -> None:
        """Score val into `record` (mIoU and per-class IoU), keep best.pt, write last.pt."""
        metrics = evaluate(self._bare_model(), self.val_set, self.device,
                           show_progress=False).compute()
        record["val_miou"] = float(metrics["miou"])
        # Plain floats: checkpoints load with weights_only=True, which refuses NumPy scalars.
        record["val_iou"] = {name: (None if math.isnan(iou) else float(iou))
                             for name, iou in zip(self.class_names, metrics["per_class_iou"])}
        self._log_scalars(writer, record, metrics["per_class_iou"])
        if record["val_miou"] > self.best_miou:
            self.best_miou = record["val_miou"]
            # best before last: a kill between the two repeats this epoch and rewrites both.
            self.save("best.pt")
        self.save("last.pt")
        plot_training_curve(self.history, self.class_names, self.out_dir / CURVE_FILE,
                            title=f"{self.config.dataset}, {self.config.out_dir}")

    def _summary_writer(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed; no TensorBoard logs")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def _log_scalars(self, writer, record: dict, per_class_iou) -> None:
        if writer is None:
            return
        step = record["epoch"]
        writer.add_scalar("train/loss", record["loss"], step)
        writer.add_scalar("train/lr", record["lr"], step)
        writer.add_scalar("val/miou", record["val_miou"], step)
        for name, iou in zip(self.class_names, per_class_iou):
            if not math.isnan(iou):
                writer.add_scalar(f"val_iou/{name}", iou, step)


def train(config: TrainConfig, stop_after_epochs: int | None = None) -> dict:
    """Train (resuming from out_dir/last.pt when it exists) and return a summary.

    `stop_after_epochs` ends this run early, checkpointed; the next call carries on exactly.
    """
    trainer = Trainer(config)
    trainer.resume()
    return trainer.fit(stop_after_epochs)
