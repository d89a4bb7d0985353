"""Time one FBSNet training step with each speed option, side by side on this machine.

    python bench/train_step.py [--device cpu|cuda] [--batch 8] [--size 288 384] [--rounds 3]
                               [--compile] [--options NAME ...] [--augment] [--profile FILE]

Options timed: fp32 (the reference), fp32 + channels_last, bf16 autocast, bf16 autocast +
channels_last; on CUDA also fp16 autocast (with the gradient scaler training uses) with and
without channels_last, and fp32 and bf16 with channels_last whose forward and backward replay
CUDA graphs (recipe key cuda_graph); with --compile also through torch.compile (CPU: bf16 with
and without channels_last; CUDA: fp32 and bf16 with channels_last; minutes of compiling first,
not counted). `--options` names the options to
time instead.
Rounds interleave the options so that a machine whose speed drifts affects all alike; each
figure is the median step over every round. On CUDA each step is timed between
synchronisations, cuDNN picks its kernels once per shape (benchmark mode, as training sets
it) and fp32 convolutions run as TF32 (PyTorch's default for cuDNN). The training options are
the recipe keys amp/amp_dtype, channels_last, compile and cuda_graph
(fbsnet_ros.training.config): put in the recipe what wins here, since machines differ (bf16
pays only on CPUs with bf16 arithmetic: AMX, AVX512-BF16). An option that fails to build or
run is reported and left out.

`--augment` also times data_on_device's batch augmentation (BatchAugment) alone, and
`--profile FILE` writes, for each option, the kernels that take the most time in one step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from fbsnet_ros.data.classes import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary
from fbsnet_ros.model import FBSNet
from fbsnet_ros.training.device_data import BatchAugment, Photometric
from fbsnet_ros.training.loop import (
    adam,
    compiled_for_training,
    cpu_bf16_channels_last_gradients_are_right,
    graph_training_model,
)

OPTIONS = {  # name: (autocast dtype or None, channels_last, "", "compile" or "graph")
    "fp32": (None, False, ""),
    "fp32+channels_last": (None, True, ""),
    "bf16": (torch.bfloat16, False, ""),
    "bf16+channels_last": (torch.bfloat16, True, ""),
    "fp16": (torch.float16, False, ""),
    "fp16+channels_last": (torch.float16, True, ""),
    "bf16+compile": (torch.bfloat16, False, "compile"),
    "fp32+channels_last+compile": (None, True, "compile"),
    "bf16+channels_last+compile": (torch.bfloat16, True, "compile"),
    "fp16+channels_last+compile": (torch.float16, True, "compile"),
    "fp32+graph": (None, False, "graph"),
    "fp32+channels_last+graph": (None, True, "graph"),
    "bf16+channels_last+graph": (torch.bfloat16, True, "graph"),
    "fp16+channels_last+graph": (torch.float16, True, "graph"),
}
# What each device times by default (fp16 autocast trains on CUDA only), and with --compile.
DEFAULT_OPTIONS = {
    "cpu": ("fp32", "fp32+channels_last", "bf16", "bf16+channels_last"),
    "cuda": ("fp32", "fp32+channels_last", "bf16", "bf16+channels_last", "fp16",
             "fp16+channels_last", "fp32+channels_last+graph", "bf16+channels_last+graph"),
}
COMPILE_OPTIONS = {
    "cpu": ("bf16+compile", "bf16+channels_last+compile"),
    "cuda": ("fp32+channels_last+compile", "bf16+channels_last+compile"),
}
NUM_CLASSES = 11  # CamVid


class StepRunner:
    """A model, Adam and one fixed batch on a device; `step()` is one whole training step."""

    def __init__(self, dtype, channels_last: bool, speedup: str, batch: int, size,
                 device: torch.device) -> None:
        torch.manual_seed(0)
        self.device = device
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = FBSNet(num_classes=NUM_CLASSES).to(device, memory_format=self.format)
        self.model.train()
        self.forward = (compiled_for_training(self.model, device, dtype)
                        if speedup == "compile" else self.model)
        self.optimizer = adam(self.model.parameters(), device, lr=1e-3)
        # As the training loop: float16 needs loss scaling, bfloat16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.dtype = dtype
        self.images = torch.randn(batch, 3, *size, device=device)
        self.images = self.images.contiguous(memory_format=self.format)
        self.labels = torch.randint(0, NUM_CLASSES, (batch, *size), device=device)
        if speedup == "graph":  # as the recipe key cuda_graph does it
            graph_training_model(self.model, self.images, dtype)

    def run_step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.criterion(self.forward(self.images).float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def step(self) -> float:
        """Seconds of one step, the device's queued work included."""
        synchronize(self.device)
        started = time.perf_counter()
        self.run_step()
        synchronize(self.device)
        return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_augment(device: torch.device, batch: int, size, rounds: int) -> list[float]:
    """Seconds per batch of BatchAugment with every photometric change on (camvid_gpu.yaml's)."""
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch, *size), dtype=torch.uint8, device=device)
    photometric = Photometric(0.3, 0.3, 0.3, channel_gain=0.1, blur_probability=0.2)
    augment = BatchAugment(size, IMAGENET_MEAN, IMAGENET_STD, photometric=photometric)
    augment(frames, labels, generator)  # warm-up
    samples = []
    for _ in range(rounds):
        synchronize(device)
        started = time.perf_counter()
        augment(frames, labels, generator)
        synchronize(device)
        samples.append(time.perf_counter() - started)
    return samples


def profile_table(runner: StepRunner) -> str:
    """The kernels (or CPU operators) that take the most time in one step, as a table."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    sort_by = "self_cpu_time_total"
    if runner.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        sort_by = "self_cuda_time_total"
    with profile(activities=activities) as profiler:
        runner.run_step()
        synchronize(runner.device)
    return profiler.key_averages().table(sort_by=sort_by, row_limit=25,
                                         max_name_column_width=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(288, 384), metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per option per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--options", nargs="+", choices=tuple(OPTIONS), default=None,
                        help="time these options (the first is the reference)")
    parser.add_argument("--augment", action="store_true",
                        help="also time the on-device batch augmentation")
    parser.add_argument("--profile", default=None,
                        help="write the costliest kernels of one step of each option here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        # Crops have one size: cuDNN times its kernels once per convolution, as training does.
        torch.backends.cudnn.benchmark = True
    names = list(args.options or DEFAULT_OPTIONS[device.type])
    if args.compile and not args.options:
        names += COMPILE_OPTIONS[device.type]
    print(format_machine())  # CPU, torch threads, OMP_NUM_THREADS and OMP_WAIT_POLICY
    runners = {}
    for name in names:
        dtype, channels_last = OPTIONS[name][:2]
        if (device.type == "cpu" and dtype == torch.bfloat16 and channels_last
                and not cpu_bf16_channels_last_gradients_are_right()):
            print(f"{name}: left out: this PyTorch computes wrong gradients for dilated "
                  "depth-wise convs in bf16 + channels_last on this CPU (training refuses it)",
                  flush=True)
            continue
        warm_started = time.perf_counter()
        try:
            runners[name] = StepRunner(*OPTIONS[name], args.batch, args.size, device)
            runners[name].step()  # warm-up (compilation, cuDNN's kernel search)
            runners[name].step()
        except Exception as error:  # one option failing here must not cost the others' figures
            runners.pop(name, None)
            print(f"{name}: failed, left out: {type(error).__name__}: {error}", flush=True)
            continue
        print(f"{name}: first two steps {time.perf_counter() - warm_started:.1f} s (untimed)",
              flush=True)
    names = [name for name in names if name in runners]
    samples = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            samples[name] += [runners[name].step() for _ in range(args.steps)]
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    reference = statistics.median(samples[names[0]])
    print(f"\none training step on {args.device}, batch {args.batch} at "
          f"{args.size[0]}x{args.size[1]}, Adam; median of {args.rounds * args.steps} steps "
          f"per option")
    print(f"{'option':28s} {'median':>9s} {'min':>9s} {'x ' + names[0]:>9s}")
    rows = {}
    for name in names:
        median = statistics.median(samples[name])
        rows[name] = {"median_s": median, "min_s": min(samples[name]),
                      "ratio_to_reference": reference / median}
        print(f"{name:28s} {median:8.4f}s {min(samples[name]):8.4f}s "
              f"{reference / median:8.2f}x")
    report = {"machine": machine_summary(), "device": args.device, "batch": args.batch,
              "size": list(args.size), "reference": names[0], "options": rows}
    if args.augment:
        augment = time_augment(device, args.batch, args.size, args.rounds * args.steps)
        report["augment_median_s"] = statistics.median(augment)
        print(f"{'augment (data_on_device)':28s} {statistics.median(augment):8.4f}s "
              f"{min(augment):8.4f}s")
    if args.profile:
        with open(args.profile, "w") as file:
            for name in names:
                file.write(f"== {name}: one step\n{profile_table(runners[name])}\n")
        print(f"profile of one step per option: {args.profile}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
