"""Losses for training: class-weighted cross-entropy and online hard example mining."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fbsnet_ros.data.classes import IGNORE_INDEX


def enet_class_weights(
    labels: Iterable[np.ndarray], num_classes: int, c: float = 1.02
) -> torch.Tensor:
    """ENet's weighting 1 / ln(c + p_class): rare classes weigh more, bounded by 1 / ln(c)."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for label in labels:
        valid = label[label < num_classes]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    frequency = counts / max(counts.sum(), 1.0)
    return torch.tensor(1.0 / np.log(c + frequency), dtype=torch.float32)


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the pixels predicted with probability below `threshold`.

    At least `min_kept` pixels are kept so that easy batches still give a gradient.
    """

    def __init__(self, threshold: float = 0.7, min_kept: int = 100_000,
                 weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.threshold = threshold
        self.min_kept = min_kept
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pixel_loss = F.cross_entropy(logits, target, weight=self.weight,
                                     ignore_index=self.ignore_index, reduction="none").flatten()
        valid = target.flatten() != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        with torch.no_grad():
            probability = torch.softmax(logits, dim=1)
            safe_target = target.clone()
            safe_target[~valid.view_as(target)] = 0
            target_probability = probability.gather(1, safe_target.unsqueeze(1)).flatten()[valid]
            kept = min(self.min_kept, target_probability.numel())
            threshold = max(self.threshold,
                            float(target_probability.kthvalue(kept).values) if kept > 0 else 0.0)
        hard = target_probability <= threshold
        kept_loss = pixel_loss[valid][hard]
        if self.weight is None:
            return kept_loss.mean()
        # As cross_entropy's mean: normalised by the kept pixels' class weights, not their count.
        kept_weight = self.weight[target.flatten()[valid][hard]]
        return kept_loss.sum() / kept_weight.sum()


def build_loss(name: str, weight: torch.Tensor | None, ohem_threshold: float = 0.7,
               ohem_min_kept: int = 100_000) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)
    if name == "ohem":
        return OhemCrossEntropy(ohem_threshold, ohem_min_kept, weight)
    raise ValueError(f"unknown loss {name!r}; choose 'ce' or 'ohem'")
