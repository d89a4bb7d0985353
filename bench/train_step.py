"""Time one FBSNet training step with each speed option, side by side on this machine.

    python bench/train_step.py [--batch 8] [--size 288 384] [--rounds 3] [--compile]

Options timed: fp32 (the reference), fp32 + channels_last, bf16 autocast, bf16 autocast +
channels_last, and with --compile bf16 + channels_last + torch.compile (minutes of compiling
first, not counted). Rounds interleave the options so that a machine whose speed drifts
affects all alike; each figure is the median step over every round. The training options
are the recipe keys amp/amp_dtype, channels_last and compile (fbsnet_ros.training.config):
put in the recipe what wins here, since CPUs differ (bf16 pays only on CPUs with bf16
arithmetic: AMX, AVX512-BF16).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch import nn

from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary
from fbsnet_ros.model import FBSNet

OPTIONS = {  # name: (autocast dtype or None, channels_last, compile)
    "fp32": (None, False, False),
    "fp32+channels_last": (None, True, False),
    "bf16": (torch.bfloat16, False, False),
    "bf16+channels_last": (torch.bfloat16, True, False),
    "bf16+channels_last+compile": (torch.bfloat16, True, True),
}


class StepRunner:
    """A model, Adam and one fixed batch; `step()` is one whole training step."""

    def __init__(self, dtype, channels_last: bool, compiled: bool, batch: int, size) -> None:
        torch.manual_seed(0)
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = FBSNet(num_classes=11).to(memory_format=self.format).train()
        self.forward = torch.compile(self.model) if compiled else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.criterion = nn.CrossEntropyLoss(ignore_index=255)
        self.dtype = dtype
        self.images = torch.randn(batch, 3, *size).contiguous(memory_format=self.format)
        self.labels = torch.randint(0, 11, (batch, *size))

    def step(self) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.criterion(self.forward(self.images).float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(288, 384), metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per option per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    names = [name for name in OPTIONS if args.compile or not OPTIONS[name][2]]
    print(format_machine())
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    runners = {}
    for name in names:
        runners[name] = StepRunner(*OPTIONS[name], args.batch, args.size)
        warm_started = time.perf_counter()
        runners[name].step()  # warm-up (and compilation)
        print(f"{name}: first step {time.perf_counter() - warm_started:.1f} s (untimed)",
              flush=True)
    samples = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            samples[name] += [runners[name].step() for _ in range(args.steps)]
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    reference = statistics.median(samples["fp32"])
    print(f"\none training step, batch {args.batch} at {args.size[0]}x{args.size[1]}, Adam; "
          f"median of {args.rounds * args.steps} steps per option")
    print(f"{'option':28s} {'median':>9s} {'min':>9s} {'x fp32':>7s}")
    rows = {}
    for name in names:
        median = statistics.median(samples[name])
        rows[name] = {"median_s": median, "min_s": min(samples[name]),
                      "ratio_to_fp32": reference / median}
        print(f"{name:28s} {median:8.2f}s {min(samples[name]):8.2f}s "
              f"{reference / median:6.2f}x")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": machine_summary(), "batch": args.batch,
                       "size": list(args.size), "options": rows}, file, indent=2)


if __name__ == "__main__":
    main()
