"""INT8 (openvino:int8): the quantize command, the checkpoint it writes, the accuracy gate."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from fbsnet_ros.checkpoint import save_inference_checkpoint
from fbsnet_ros.data.datasets import camvid
from fbsnet_ros.inference import Segmenter, default_weights_path, load_model
from fbsnet_ros.inference.backends import (
    AUTO_PREFERENCE,
    BackendUnavailable,
    available_backends,
)
from fbsnet_ros.inference.quantize import GATE_MAX_DROP, GateResult, evenly_spaced, run_gate

pytestmark = pytest.mark.skipif(
    "openvino:int8" not in available_backends(torch.device("cpu")), reason="OpenVINO missing")
# CamVid val frames the shipped INT8 model is re-scored on (the full set: `fbsnet-ros quantize`).
GATE_SUBSET = 20


@pytest.fixture(scope="module")
def quantized(random_checkpoint, camvid_root, tmp_path_factory) -> dict:
    """The random weights through `fbsnet-ros quantize`, on a few frames."""
    pytest.importorskip("nncf")
    from fbsnet_ros.cli import main

    output = tmp_path_factory.mktemp("int8") / "random_int8.pt"
    status = main(["quantize", "--weights", str(random_checkpoint), "--output", str(output),
                   "--data-root", str(camvid_root), "--calibration-frames", "4",
                   "--gate-frames", "2"])
    return {"path": output, "status": status}


def test_gate_passes_within_half_a_point_of_fp32():
    assert GateResult(fp32_miou=68.1, int8_miou=67.6, frames=101).passed
    assert GateResult(fp32_miou=68.1, int8_miou=68.9, frames=101).passed  # better is fine
    failed = GateResult(fp32_miou=68.1, int8_miou=67.5, frames=101)
    assert not failed.passed and failed.drop == pytest.approx(0.6)
    assert failed.to_dict()["passed"] is False and GATE_MAX_DROP == 0.5
    assert evenly_spaced(3, 101) == [0, 50, 100] and evenly_spaced(5, 3) == [0, 1, 2]


def test_int8_without_a_model_names_the_command_that_makes_one(random_checkpoint):
    with pytest.raises(BackendUnavailable, match="fbsnet-ros quantize"):
        Segmenter.from_checkpoint(random_checkpoint, device="cpu", backend="openvino:int8")


def test_quantize_writes_the_int8_model_and_its_gate(quantized, camvid_root, monkeypatch):
    # Random weights label every pixel alike, in fp32 and INT8: the gate passes (exit 0).
    assert quantized["status"] == 0
    payload = torch.load(quantized["path"], weights_only=True)
    assert payload["metadata"]["int8"]["gate"]["passed"] is True
    _, metadata = load_model(quantized["path"])
    assert set(metadata.int8_model) == {"xml", "bin"}
    gate = metadata.int8["gate"]
    assert gate["frames"] == 2 and gate["split"] == "val"
    assert metadata.int8["calibration"]["frames"] == 4
    # auto takes INT8 first, for weights that passed.
    assert AUTO_PREFERENCE["cpu"][0] == "openvino:int8"
    monkeypatch.setitem(AUTO_PREFERENCE, "cpu", ("openvino:int8", "torch:fp32"))
    segmenter = Segmenter.from_checkpoint(quantized["path"], device="cpu", backend="auto")
    assert segmenter.backend_name == "openvino:int8"
    image, _ = camvid(camvid_root, "val").load(0)
    labels = segmenter.predict(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8


def test_int8_quantizes_only_the_dense_convolutions(quantized):
    import openvino

    _, metadata = load_model(quantized["path"])
    assert metadata.int8["calibration"]["operations"] == ["Convolution"]
    ir = metadata.int8_model
    network = openvino.Core().read_model(model=bytes(ir["xml"]), weights=openvino.Tensor(
        np.frombuffer(bytes(ir["bin"]), np.uint8).copy()))
    quantizers = [op for op in network.get_ops() if op.get_type_name() == "FakeQuantize"]
    readers = {target.get_node().get_type_name()
               for quantizer in quantizers for target in quantizer.output(0).get_target_inputs()}
    assert len(quantizers) > 20 and readers == {"Convolution"}


def test_int8_runs_its_rest_in_the_precision_its_gate_measured(quantized, tmp_path):
    from fbsnet_ros.inference.backends.openvino_backend import openvino_capabilities

    model, metadata = load_model(quantized["path"])
    here = "bf16" if "BF16" in openvino_capabilities() else "fp32"
    assert metadata.int8["rest_precision"] == here  # what the gate ran here
    segmenter = Segmenter.from_checkpoint(quantized["path"], device="cpu",
                                          backend="openvino:int8")
    assert segmenter.backend.rest_precision == here
    assert f"unquantized rest in {here}" in segmenter.backend.describe()
    # A model whose gate records no rest precision (made before it was recorded) ran it in f32.
    del metadata.int8["rest_precision"]
    older = tmp_path / "older_int8.pt"
    save_inference_checkpoint(model, metadata, older)
    segmenter = Segmenter.from_checkpoint(older, device="cpu", backend="openvino:int8")
    assert segmenter.backend.rest_precision == "fp32"


def test_auto_passes_over_int8_whose_gate_failed(quantized, tmp_path, caplog, monkeypatch):
    model, metadata = load_model(quantized["path"])
    metadata.int8["gate"]["passed"] = False
    failed = tmp_path / "failed_gate.pt"
    save_inference_checkpoint(model, metadata, failed)
    monkeypatch.setitem(AUTO_PREFERENCE, "cpu", ("openvino:int8", "torch:fp32"))
    with caplog.at_level(logging.INFO, logger="fbsnet_ros"):
        segmenter = Segmenter.from_checkpoint(failed, device="cpu", backend="auto")
    assert segmenter.backend_name != "openvino:int8"
    assert "failed its accuracy gate" in caplog.text
    # Chosen by name it still runs: the user asked for it.
    assert Segmenter.from_checkpoint(failed, device="cpu",
                                     backend="openvino:int8").backend_name == "openvino:int8"


def test_int8_model_of_other_weights_is_refused(quantized, tmp_path):
    model, metadata = load_model(quantized["path"])
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    retrained = tmp_path / "retrained.pt"
    save_inference_checkpoint(model, metadata, retrained)
    with pytest.raises(BackendUnavailable, match="made from other weights"):
        Segmenter.from_checkpoint(retrained, device="cpu", backend="openvino:int8")


def test_shipped_int8_scores_within_the_gate_on_val_frames(camvid_root):
    model, metadata = load_model(default_weights_path())
    assert metadata.int8_model is not None, "the shipped weights hold no INT8 model"
    assert metadata.int8["gate"]["passed"] and metadata.int8["gate"]["frames"] == 101
    val = camvid(camvid_root, "val")
    result = run_gate(model, metadata, val, evenly_spaced(GATE_SUBSET, len(val)))
    print(f"INT8 {result.int8_miou:.2f} % vs fp32 {result.fp32_miou:.2f} % mIoU "
          f"on {result.frames} val frames")
    assert result.passed, f"INT8 loses {result.drop:.2f} mIoU points on {result.frames} frames"
