"""Inference-only rewrites of a trained FBSNet; the checkpoint's state-dict layout is untouched."""

from __future__ import annotations

import copy
import itertools

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Convolutions whose directly following batch norm can be folded into their weights.
FOLDABLE_CONVS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)
FOLDABLE_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every conv -> batch-norm pair folded into one conv.

    Only pairs that are adjacent inside an nn.Sequential are folded (ConvNormAct, the upsampling
    blocks, coordinate attention's squeeze): there the batch norm sees exactly the conv's output.
    Batch norms after sums, concatenations or activations stay, as folding them would change
    the result at zero-padded borders.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for conv_name, norm_name in itertools.pairwise(names):
            conv, norm = module._modules[conv_name], module._modules[norm_name]
            if isinstance(conv, FOLDABLE_CONVS) and isinstance(norm, FOLDABLE_NORMS):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                module._modules[conv_name] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
                module._modules[norm_name] = nn.Identity()
    return folded


def count_batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, FOLDABLE_NORMS) for m in model.modules())
