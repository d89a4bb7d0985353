"""Building blocks of FBSNet, each made from one conv-norm-activation primitive."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# The authors train with eps=1e-3 batch norm everywhere except coordinate attention.
BN_EPS = 1e-3


class ConvNormAct(nn.Sequential):
    """Convolution, then optional batch norm and PReLU: the network's only conv primitive."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        stride: int = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        norm_act: bool = True,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                (kh, kw),
                stride=stride,
                padding=(dh * (kh - 1) // 2, dw * (kw - 1) // 2),
                dilation=(dh, dw),
                groups=groups,
                bias=False,
            )
        ]
        if norm_act:
            layers += [nn.BatchNorm2d(out_channels, eps=BN_EPS), nn.PReLU(out_channels)]
        super().__init__(*layers)


class NormAct(nn.Sequential):
    """Batch norm followed by PReLU, used between stages."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=BN_EPS), nn.PReLU(channels))


class ChannelAttention(nn.Module):
    """ECA channel attention (paper Eq. 8): a 1-D conv across pooled channels, no reduction."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))  # (N, C)
        weights = torch.sigmoid(self.conv(pooled.unsqueeze(1))).squeeze(1)  # (N, C)
        return x * weights[:, :, None, None]


class SpatialAttention(nn.Module):
    """CBAM spatial attention (paper Eq. 9), applied to its input: x * M_s(x)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(descriptor))


class CoordinateAttention(nn.Module):
    """Coordinate attention (Hou et al.): the paper's Feature Aggregation Module, Eq. 10-13."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.squeeze = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
        )
        self.attend_h = nn.Conv2d(hidden, channels, 1)
        self.attend_w = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        pooled_h = x.mean(dim=3, keepdim=True)  # (N, C, H, 1)
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (N, C, W, 1)
        mixed = self.squeeze(torch.cat([pooled_h, pooled_w], dim=2))  # (N, hidden, H + W, 1)
        mixed_h, mixed_w = torch.split(mixed, [height, width], dim=2)
        weight_h = torch.sigmoid(self.attend_h(mixed_h))  # (N, C, H, 1)
        weight_w = torch.sigmoid(self.attend_w(mixed_w.transpose(2, 3)))  # (N, C, 1, W)
        return x * weight_h * weight_w


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class BottleneckResidualUnit(nn.Module):
    """BRU (paper Eq. 1-7): halve channels, two factorised depth-wise branches, one dilated."""

    def __init__(self, channels: int, dilation: int, eca_kernel: int = 3) -> None:
        super().__init__()
        half = channels // 2

        def depthwise(kernel: tuple[int, int], rate: int) -> ConvNormAct:
            along = (rate, 1) if kernel[0] > 1 else (1, rate)
            return ConvNormAct(half, half, kernel, dilation=along, groups=half)

        self.pre_norm = NormAct(channels)
        self.reduce = ConvNormAct(channels, half, 1)
        self.local_first = nn.Sequential(depthwise((3, 1), 1), depthwise((1, 3), 1))
        self.local_attention = ChannelAttention(eca_kernel)
        self.local_second = nn.Sequential(depthwise((1, 3), 1), depthwise((3, 1), 1))
        self.context_first = nn.Sequential(depthwise((3, 1), dilation), depthwise((1, 3), dilation))
        self.context_attention = ChannelAttention(eca_kernel)
        self.context_second = nn.Sequential(
            depthwise((1, 3), dilation), depthwise((3, 1), dilation))
        self.identity_attention = ChannelAttention(eca_kernel)
        self.merge_norm = NormAct(half)
        self.expand = ConvNormAct(half, channels, 1, norm_act=False)
        self.output_attention = ChannelAttention(eca_kernel)
        self.shuffle_groups = half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(self.residual(x) + x, self.shuffle_groups)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the identity path and the shuffle: (N, C, H, W) -> (N, C, H, W)."""
        reduced = self.reduce(self.pre_norm(x))  # (N, C/2, H, W)
        local_mid = self.local_attention(self.local_first(reduced))
        local = self.local_second(local_mid)
        context_mid = self.context_attention(self.context_first(reduced))
        context = self.context_second(context_mid)
        middle = local_mid + self.identity_attention(reduced) + context_mid
        merged = self.merge_norm(local + context + middle)
        return self.output_attention(self.expand(merged))  # (N, C, H, W)


class DownsamplingBlock(nn.Module):
    """ENet initial block: strided 3x3 conv concatenated with max-pooling, then BN-PReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool_input = in_channels < out_channels
        conv_channels = out_channels - in_channels if self.pool_input else out_channels
        self.conv = ConvNormAct(in_channels, conv_channels, 3, stride=2, norm_act=False)
        self.norm_act = NormAct(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.pool_input:
            out = torch.cat([out, F.max_pool2d(x, 2, 2)], dim=1)
        return self.norm_act(out)


class UpsamplingBlock(nn.Sequential):
    """Transposed 3x3 conv that doubles resolution, then BN and ReLU6 as in the authors' code."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU6(inplace=True),
        )
