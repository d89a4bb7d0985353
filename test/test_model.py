"""FBSNet: shapes, parameter counts, gradient flow and the config that defines it."""

import pytest
import torch

from fbsnet_ros.model import (
    FBSNet,
    FBSNetConfig,
    StageSpec,
    build_fbsnet,
    count_parameters,
    paper_table1_config,
)


@pytest.mark.parametrize("size", [(64, 96), (120, 160), (8, 8), (56, 200)])
def test_logits_match_input_size(size):
    model = FBSNet(num_classes=11).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, 11, *size)


def test_table1_variant_runs():
    model = build_fbsnet(num_classes=19, variant="paper-table1").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 19, 64, 64)


def test_parameter_counts():
    # The authors' code counts 607,199: 96 more, from a BN-PReLU it builds and never uses.
    assert count_parameters(FBSNet(num_classes=19)) == 607_103
    assert count_parameters(build_fbsnet(num_classes=19, variant="paper-table1")) == 636_575
    # Only the classifier depends on the class count: 11 CamVid classes cost 8 fewer channels.
    per_class = count_parameters(FBSNet(num_classes=20)) - count_parameters(FBSNet(num_classes=19))
    assert count_parameters(FBSNet(num_classes=11)) == 607_103 - 8 * per_class == 606_071


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = FBSNet(num_classes=5).train()
    logits = model(torch.randn(2, 3, 48, 64))
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 5, (2, 48, 64))).backward()
    missing = [name for name, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_config_round_trip_and_validation():
    config = paper_table1_config(num_classes=7)
    assert FBSNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown FBSNet config keys"):
        FBSNetConfig.from_dict({**config.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="detail branch"):
        FBSNetConfig(detail_channels=(32, 128, 16))
    with pytest.raises(ValueError, match="initial block"):
        FBSNetConfig(encoder=(StageSpec(32, (1,)), StageSpec(64, (1,)), StageSpec(128, (1,))))
    with pytest.raises(ValueError, match="unknown FBSNet variant"):
        build_fbsnet(variant="bigger")


def test_spatial_attention_weights_the_detail_features():
    """Departure from the authors' code: the map multiplies the features (paper Eq. 9)."""
    from fbsnet_ros.model.blocks import SpatialAttention

    attention = SpatialAttention()
    features = torch.rand(1, 4, 10, 10) + 0.5
    weighted = attention(features)
    assert weighted.shape == features.shape
    ratio = weighted / features
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))  # one map for all channels
    assert ((ratio > 0) & (ratio < 1)).all()
