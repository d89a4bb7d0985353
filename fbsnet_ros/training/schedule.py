"""Learning-rate schedule: linear warm-up, then polynomial decay, stepped per iteration."""

from __future__ import annotations

import torch


def poly_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                     power: float = 0.9,
                     warmup_ratio: float = 0.1,
                     last_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """lr * factor(step): warmup_ratio -> 1 over warmup_steps, then (1 - progress) ** power.

    `last_step` > 0 builds the schedule for a run already that many steps in (a re-planned
    total); the optimiser's param groups then already hold `initial_lr`.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
        progress = min(step, total_steps) / max(total_steps, 1)
        return (1.0 - progress) ** power

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=last_step - 1)
