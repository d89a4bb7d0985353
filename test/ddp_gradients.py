"""Launched by test_training.py under torchrun: DDP gradients equal one process's on the batch.

    python -m torch.distributed.run --nproc_per_node 2 --standalone test/ddp_gradients.py OUT

Every rank takes its DistributedSampler share of one batch and backpropagates through the model
wrapped as the training loop wraps it; rank 0 then backpropagates the whole batch through an
unwrapped copy and writes the largest difference between the two gradients to OUT (JSON).

The identity needs a configuration where averaging per-rank losses equals the loss of the whole
batch: batch norm uses its frozen running statistics (eval mode) and every sample has the same
number of non-ignored pixels, so every rank's mean is over the same pixel count.
"""

from __future__ import annotations

import copy
import json
import sys

import torch
from torch.utils.data import DistributedSampler, TensorDataset

from fbsnet_ros.data.classes import IGNORE_INDEX
from fbsnet_ros.model import build_fbsnet
from fbsnet_ros.training.loop import distributed_model
from fbsnet_ros.training.losses import build_loss

NUM_CLASSES = 5
BATCH, HEIGHT, WIDTH = 4, 32, 48
IGNORED_ROWS = 3  # the same ignored area in every sample


def make_batch() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (BATCH, HEIGHT, WIDTH), generator=generator)
    labels[:, :IGNORED_ROWS] = IGNORE_INDEX
    return TensorDataset(images, labels)


def gradients(model: torch.nn.Module) -> list[torch.Tensor]:
    return [parameter.grad.detach().clone() for parameter in model.parameters()]


def main(out_path: str) -> int:
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every rank
    model = build_fbsnet(num_classes=NUM_CLASSES).eval()  # frozen batch-norm statistics
    reference = copy.deepcopy(model)
    criterion = build_loss("ce", weight=None)
    batch = make_batch()

    indices = list(DistributedSampler(batch, num_replicas=world, rank=rank, shuffle=False))
    images, labels = batch[indices]
    wrapped = distributed_model(model, torch.device("cpu"))
    criterion(wrapped(images), labels).backward()
    averaged = gradients(model)

    if rank == 0:
        images, labels = batch.tensors
        criterion(reference(images), labels).backward()
        whole = gradients(reference)
        difference = max(float((a - b).abs().max()) for a, b in zip(averaged, whole))
        scale = max(float(g.abs().max()) for g in whole)
        with open(out_path, "w") as stream:
            json.dump({"world_size": world, "rank_samples": len(indices),
                       "max_abs_difference": difference, "max_abs_gradient": scale,
                       "parameters": len(whole)}, stream)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
