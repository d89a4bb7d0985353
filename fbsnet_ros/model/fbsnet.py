"""FBSNet (Gao et al., IEEE TMM 2022): the architecture as data, consumed by one builder."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fbsnet_ros.model.blocks import (
    BottleneckResidualUnit,
    ChannelAttention,
    ConvNormAct,
    CoordinateAttention,
    DownsamplingBlock,
    NormAct,
    SpatialAttention,
    UpsamplingBlock,
)

# The network downsamples three times (initial block and two downsampling blocks).
OUTPUT_STRIDE = 8


@dataclass(frozen=True)
class StageSpec:
    """One stage of the semantic branch: its width and one BRU per dilation rate."""

    channels: int  # feature channels inside the stage
    dilations: tuple[int, ...]  # dilation rate of each BRU; the length is the stage depth


@dataclass(frozen=True)
class FBSNetConfig:
    """Every choice that shapes FBSNet's state dict. Defaults follow the authors' code."""

    # classes predicted by the projection layer (CamVid 11, Cityscapes 19)
    num_classes: int = 19
    # width of the initial block; the first encoder stage must match it
    stem_channels: int = 16
    # semantic-branch encoder stages at 1/2, 1/4 and 1/8 resolution
    encoder: tuple[StageSpec, ...] = (
        StageSpec(16, (1, 1, 1, 1, 1)),
        StageSpec(64, (1, 2, 5, 9, 17)),
        StageSpec(128, (1, 2, 5, 9, 1, 2, 5, 9, 2, 5, 9, 17, 2, 5, 9, 17)),
    )
    # decoder stages at 1/4 and 1/2 resolution, each after a 2x upsampling block
    decoder: tuple[StageSpec, ...] = (
        StageSpec(64, (1, 1, 1)),
        StageSpec(32, (1, 1, 1)),
    )
    # widths of the spatial detail branch's 3x3 convs; the last must equal the last decoder width
    detail_channels: tuple[int, ...] = (32, 128, 32)
    # 1-D kernel of every ECA channel attention
    eca_kernel: int = 3
    # kernel of the detail branch's spatial attention
    spatial_attention_kernel: int = 7
    # channel reduction of the coordinate-attention aggregation module
    aggregation_reduction: int = 4

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.encoder[0].channels != self.stem_channels:
            raise ValueError("the first encoder stage must be as wide as the initial block")
        if len(self.encoder) != 3 or len(self.decoder) != 2:
            raise ValueError("FBSNet has three encoder stages and two decoder stages")
        if self.detail_channels[-1] != self.decoder[-1].channels:
            raise ValueError("the detail branch must end as wide as the last decoder stage")

    def to_dict(self) -> dict:
        """Plain types only, so the config can live in a weights_only checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FBSNetConfig:
        values = dict(values)
        for key in ("encoder", "decoder"):
            if key in values:
                values[key] = tuple(
                    StageSpec(int(stage["channels"]), tuple(int(d) for d in stage["dilations"]))
                    for stage in values[key]
                )
        if "detail_channels" in values:
            values["detail_channels"] = tuple(int(c) for c in values["detail_channels"])
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown FBSNet config keys: {sorted(unknown)}")
        return cls(**values)


def paper_table1_config(num_classes: int = 19) -> FBSNetConfig:
    """The variant printed in Table I of the paper (3/3/20 encoder, 16-wide last decoder)."""
    return FBSNetConfig(
        num_classes=num_classes,
        encoder=(
            StageSpec(16, (1, 1, 1)),
            StageSpec(64, (1, 1, 1)),
            StageSpec(128, (1, 2, 5, 9, 17) * 4),
        ),
        decoder=(StageSpec(64, (1, 1, 1)), StageSpec(16, (1, 1, 1))),
        detail_channels=(64, 64, 16),
    )


NAMED_CONFIGS = {
    "authors": FBSNetConfig,
    "paper-table1": paper_table1_config,
}


def _stage(spec: StageSpec, eca_kernel: int) -> nn.Sequential:
    """BRUs of one stage, then BN-PReLU and channel attention, as every stage ends."""
    units = [BottleneckResidualUnit(spec.channels, d, eca_kernel) for d in spec.dilations]
    return nn.Sequential(*units, NormAct(spec.channels), ChannelAttention(eca_kernel))


class FBSNet(nn.Module):
    """Bilateral network: a symmetric semantic encoder-decoder and a full-detail spatial branch.

    Returns logits (N, num_classes, H, W) for inputs whose H and W are divisible by 8.
    """

    def __init__(self, num_classes: int | None = None, config: FBSNetConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = FBSNetConfig(num_classes=19 if num_classes is None else num_classes)
        elif num_classes is not None and num_classes != config.num_classes:
            raise ValueError("num_classes disagrees with config.num_classes")
        self.config = config
        stem, enc, dec = config.stem_channels, config.encoder, config.decoder
        eca = config.eca_kernel

        self.stem = nn.Sequential(
            ConvNormAct(3, stem, 3, stride=2),
            ConvNormAct(stem, stem, 3),
            ConvNormAct(stem, stem, 3),
            NormAct(stem),
        )
        self.stem_attention = ChannelAttention(eca)
        self.encoder1 = _stage(enc[0], eca)
        self.down1 = DownsamplingBlock(enc[0].channels, enc[1].channels)
        self.encoder2 = _stage(enc[1], eca)
        self.down2 = DownsamplingBlock(enc[1].channels, enc[2].channels)
        self.encoder3 = _stage(enc[2], eca)
        self.up1 = UpsamplingBlock(enc[2].channels, dec[0].channels)
        self.decoder1 = _stage(dec[0], eca)
        self.up2 = UpsamplingBlock(dec[0].channels, dec[1].channels)
        self.decoder2 = _stage(dec[1], eca)

        widths = (stem, *config.detail_channels)
        self.detail = nn.Sequential(
            *(ConvNormAct(c_in, c_out, 3) for c_in, c_out in itertools.pairwise(widths))
        )
        self.detail_attention = SpatialAttention(config.spatial_attention_kernel)
        self.fuse_norm = NormAct(dec[1].channels)
        self.aggregate = CoordinateAttention(dec[1].channels, config.aggregation_reduction)
        self.classifier = nn.ConvTranspose2d(dec[1].channels, config.num_classes, 2, stride=2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shared = self.stem(image)  # (N, 16, H/2, W/2)
        semantic = self.encoder1(self.stem_attention(shared))
        semantic = self.encoder2(self.down1(semantic))  # (N, 64, H/4, W/4)
        semantic = self.encoder3(self.down2(semantic))  # (N, 128, H/8, W/8)
        semantic = self.decoder1(self.up1(semantic))  # (N, 64, H/4, W/4)
        semantic = self.decoder2(self.up2(semantic))  # (N, 32, H/2, W/2)
        detail = self.detail_attention(self.detail(shared))  # (N, 32, H/2, W/2)
        fused = self.aggregate(self.fuse_norm(semantic + detail))
        return self.classifier(fused)  # (N, num_classes, H, W)


def build_fbsnet(*, num_classes: int = 19, variant: str = "authors") -> FBSNet:
    """Build a randomly initialised FBSNet of a named configuration."""
    if variant not in NAMED_CONFIGS:
        raise ValueError(f"unknown FBSNet variant {variant!r}; choose from {sorted(NAMED_CONFIGS)}")
    return FBSNet(config=NAMED_CONFIGS[variant](num_classes=num_classes))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
