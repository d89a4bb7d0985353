"""Inference-only rewrites of a trained FBSNet; the checkpoint's state-dict layout is untouched."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fbsnet_ros.model import FBSNet
from fbsnet_ros.model.blocks import (
    BottleneckResidualUnit,
    ChannelAttention,
    ConvNormAct,
    DownsamplingBlock,
    NormAct,
    channel_shuffle,
)

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


# --- Channel shuffles folded into the weights ------------------------------------------------
#
# Every BRU ends with a channel shuffle: a fixed permutation that moves the whole tensor through
# memory, and in OpenVINO forces layout changes around it (the bf16 network at 360x480 took
# 1.09x as long with them on a quiet 2-core CPU: README, "Speed"). A permutation of
# channels commutes with every per-channel operation (batch norm, PReLU, sums, pooling) and
# folds into the weights of the convolutions that read or write the tensor, so the rewritten
# network keeps each tensor in a permuted channel order instead of moving it. `order` below is
# that order: stored channel i holds true channel order[i].
# Only the ECA channel attention (a 1-D conv *across* channels) needs the true order: it reads
# its pooled vector through the inverse permutation and writes its weights back through the
# permutation, two gathers of C numbers.


class OrderedChannelAttention(nn.Module):
    """ECA (blocks.ChannelAttention) on a tensor whose channels are stored in `order`."""

    def __init__(self, attention: ChannelAttention, order: torch.Tensor) -> None:
        super().__init__()
        self.conv = attention.conv
        device = attention.conv.weight.device
        self.register_buffer("order", order.to(device))
        self.register_buffer("inverse", torch.argsort(order).to(device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))[:, self.inverse]  # (N, C) in the true order
        weights = torch.sigmoid(self.conv(pooled.unsqueeze(1))).squeeze(1)[:, self.order]
        return x * weights[:, :, None, None]


class UnshuffledBRU(BottleneckResidualUnit):
    """A BRU whose output stays in its input's stored order: the shuffle went into the weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + x


def shuffle_inverse(channels: int, groups: int) -> torch.Tensor:
    """inverse[j]: where blocks.channel_shuffle(x, groups) moves channel j of x."""
    moved = channel_shuffle(torch.arange(channels).view(1, channels, 1, 1), groups).flatten()
    return torch.argsort(moved)


def without_channel_shuffles(model: FBSNet) -> FBSNet:
    """A copy of `model` (eval mode) computing the same logits without any channel shuffle.

    The checkpoint's layout is untouched (this is for export and inference only); the logits
    agree with the original's to float rounding (the convolutions sum their inputs in another
    order), and the labels are the same but for exact ties.
    """
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        order = _unshuffle_stage(net.encoder1, _identity(net.config.stem_channels))
        order = _unshuffle_stage(net.encoder2, _permute_downsampling(net.down1, order))
        order = _unshuffle_stage(net.encoder3, _permute_downsampling(net.down2, order))
        _permute(net.up1[0], "weight", order)  # ConvTranspose2d: (in, out, kh, kw)
        order = _unshuffle_stage(net.decoder1, _identity(net.config.decoder[0].channels))
        _permute(net.up2[0], "weight", order)
        order = _unshuffle_stage(net.decoder2, _identity(net.config.decoder[1].channels))
        # semantic + detail: the detail branch writes its last channels in the semantic order
        # (its spatial attention pools across channels, which no order changes).
        _permute_outputs(net.detail[-1], order)
        _permute_norm_act(net.fuse_norm, order)
        aggregate = net.aggregate
        _permute(aggregate.squeeze[0], "weight", order, dim=1)
        for conv in (aggregate.attend_h, aggregate.attend_w):
            _permute(conv, "weight", order)
            _permute(conv, "bias", order)
        _permute(net.classifier, "weight", order)  # ConvTranspose2d: inputs on dim 0
    return net


def inference_network(model: FBSNet) -> FBSNet:
    """A copy of `model` (eval mode) for export and inference: no channel shuffles, and the
    classifier as a 1x1 conv and a pixel shuffle. Same logits to float rounding."""
    net = without_channel_shuffles(model)
    net.classifier = PixelShuffleClassifier(net.classifier)
    return net


# --- The classifier as a 1x1 conv and a pixel shuffle ----------------------------------------
#
# OpenVINO's CPU plugin keeps the "tail" of a bf16 graph in f32 for accuracy: every node it
# reaches searching back from the outputs until a convolution (a transposed convolution does
# not stop the search). From FBSNet's classifier, a 2x2 stride-2 transposed conv, that search
# ran through the upsampling blocks (transposed convs too) and along every BRU's identity path
# back to the stem, so the residual sums, attention products, batch norms and PReLUs ran in
# f32 with conversions around them. Written as a 1x1 conv (one output channel per class and
# sub-pixel) and a pixel shuffle, the same map ends the search at the classifier: the network
# runs in bf16 and only the logits' rearrangement (and the decoding after it) in f32.


class PixelShuffleClassifier(nn.Module):
    """A ConvTranspose2d whose kernel equals its stride (no overlap), as conv 1x1 + pixel
    shuffle: out[o, r*i + a, r*j + b] = sum_c x[c, i, j] * weight[c, o, a, b] + bias[o]."""

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        in_channels, out_channels, kernel_h, kernel_w = deconv.weight.shape
        if ((kernel_h, kernel_w) != deconv.stride or kernel_h != kernel_w or deconv.padding
                != (0, 0) or deconv.output_padding != (0, 0) or deconv.groups != 1
                or deconv.dilation != (1, 1)):
            raise ValueError("only a transposed conv whose square kernel equals its stride "
                             "is a pixel shuffle")
        self.scale = kernel_h
        sub_pixels = kernel_h * kernel_w
        self.conv = nn.Conv2d(in_channels, out_channels * sub_pixels, 1,
                              bias=deconv.bias is not None).to(deconv.weight)
        with torch.no_grad():
            # pixel_shuffle reads channel o * r^2 + a * r + b for class o at sub-pixel (a, b).
            self.conv.weight.copy_(deconv.weight.permute(1, 2, 3, 0).reshape(
                out_channels * sub_pixels, in_channels, 1, 1))
            if deconv.bias is not None:
                self.conv.bias.copy_(deconv.bias.repeat_interleave(sub_pixels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), self.scale)


def _identity(channels: int) -> torch.Tensor:
    return torch.arange(channels)


def _permute(module: nn.Module, name: str, order: torch.Tensor, dim: int = 0) -> None:
    tensor = getattr(module, name)
    if tensor is not None and tensor.shape[dim] > 1:  # a single shared PReLU slope stays
        tensor.data = tensor.data.index_select(dim, order.to(tensor.device)).contiguous()


def _permute_norm_act(norm_act: nn.Module, order: torch.Tensor) -> None:
    """The batch norms and PReLUs of `norm_act` (a NormAct or a ConvNormAct) for channels
    stored in `order`."""
    for layer in norm_act:
        if isinstance(layer, nn.BatchNorm2d):
            for name in ("weight", "bias", "running_mean", "running_var"):
                _permute(layer, name, order)
        elif isinstance(layer, nn.PReLU):
            _permute(layer, "weight", order)


def _permute_outputs(conv_norm_act: ConvNormAct, order: torch.Tensor) -> None:
    _permute(conv_norm_act[0], "weight", order)
    _permute_norm_act(conv_norm_act, order)


def _permute_downsampling(block: DownsamplingBlock, order: torch.Tensor) -> torch.Tensor:
    """The block reads its input in `order`; returns the order of its output (the conv's own
    channels first, then the max-pooled input channels as stored)."""
    _permute(block.conv[0], "weight", order, dim=1)
    conv_channels = block.conv[0].out_channels
    out = _identity(conv_channels)
    if block.pool_input:
        out = torch.cat([out, conv_channels + order])
    _permute_norm_act(block.norm_act, out)
    return out


def _unshuffle_stage(stage: nn.Sequential, order: torch.Tensor) -> torch.Tensor:
    """Rewrite one stage (BRUs, NormAct, ECA) for an input stored in `order`; returns the order
    its output is stored in."""
    for index, unit in enumerate(stage):
        if isinstance(unit, BottleneckResidualUnit):
            _permute_norm_act(unit.pre_norm, order)
            _permute(unit.reduce[0], "weight", order, dim=1)
            # The residual sum is formed in the input's stored order...
            _permute(unit.expand[0], "weight", order)
            unit.output_attention = OrderedChannelAttention(unit.output_attention, order)
            unit.__class__ = UnshuffledBRU
            # ...and the shuffle that followed it only renames the channels.
            order = shuffle_inverse(len(order), unit.shuffle_groups)[order]
        elif isinstance(unit, NormAct):
            _permute_norm_act(unit, order)
        elif isinstance(unit, ChannelAttention):
            stage[index] = OrderedChannelAttention(unit, order)
        else:
            raise TypeError(f"unexpected module in an FBSNet stage: {type(unit).__name__}")
    return order
