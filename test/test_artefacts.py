"""The artefact cache: entries keyed by weights and versions, damaged entries rebuilt."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fbsnet_ros.inference import Segmenter, load_model
from fbsnet_ros.inference.artefacts import CACHE_ENV, entry_name
from fbsnet_ros.inference.backends import available_backends

pytestmark = pytest.mark.skipif(
    "openvino:fp32" not in available_backends(torch.device("cpu")), reason="OpenVINO missing")


def test_entries_are_keyed_by_weights_and_what_wrote_them(random_checkpoint):
    model, _ = load_model(random_checkpoint)
    name = entry_name(model, "onnx-1", "torch=2.13.0")
    assert name == entry_name(model, "onnx-1", "torch=2.13.0")
    assert name != entry_name(model, "onnx-1", "torch=2.14.0")
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    assert name.split("-")[1] != entry_name(model, "onnx-1", "torch=2.13.0").split("-")[1]


def test_damaged_cache_entries_are_rebuilt(small_random_checkpoint, tmp_path, monkeypatch):
    # The cache's handling does not depend on the network: the small one (its labels spread over
    # the classes, so a wrong rebuild shows) exports faster, into this test's own cache.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    expected = Segmenter.from_checkpoint(small_random_checkpoint, device="cpu",
                                         backend="openvino:fp32").predict(frame)
    entries = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {path.suffix for path in entries} >= {".onnx", ".blob"}
    assert not [path for path in entries if path.name.startswith(".")]  # no temporaries left
    for path in entries:
        path.write_bytes(b"damaged" + path.read_bytes()[: path.stat().st_size // 3])
    rebuilt = Segmenter.from_checkpoint(small_random_checkpoint, device="cpu",
                                        backend="openvino:fp32")
    assert np.array_equal(rebuilt.predict(frame), expected)
    # Every damaged entry was written again, none left as it was.
    assert not [path for path in entries if path.read_bytes().startswith(b"damaged")]
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(".")]
