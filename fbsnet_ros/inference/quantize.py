"""INT8 post-training quantization for `openvino:int8`, and the accuracy gate `auto` reads.

A robot has no calibration data, so the INT8 model is made once, here, where CamVid is: NNCF
calibrates OpenVINO's INT8 ranges on CamVid train frames, and the result (OpenVINO IR) goes
into a copy of the checkpoint beside the fp32 weights, with its record in the metadata: the
accuracy gate (CamVid val mIoU of INT8 against eager fp32, passed within GATE_MAX_DROP
points), the calibration frames, the versions, and the digest of the weights it was made from.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fbsnet_ros.checkpoint import ModelMetadata
from fbsnet_ros.inference.artefacts import runtime_versions, weights_digest
from fbsnet_ros.inference.backends.base import require
from fbsnet_ros.inference.frames import FrameTransform

log = logging.getLogger(__name__)

# mIoU points INT8 may lose against eager fp32 on the validation frames (issue 15).
GATE_MAX_DROP = 0.5
# NNCF's default calibration subset; CamVid train has 367 frames.
CALIBRATION_FRAMES = 300
# The only operations NNCF quantizes: the dense convolutions (the detail branch's 3x3 convs, the
# BRUs' 1x1 convs, the stem), where VNNI pays. INT8 depth-wise convolutions and element-wise
# operations cost OpenVINO layout changes worth more than they save, and quantized depth-wise
# convs beside a bf16 rest broke accuracy (README, "INT8").
QUANTIZED_OPERATIONS = ("Convolution",)
# The precision the gate compares against: the reference backend.
REFERENCE_BACKEND = "torch:fp32"
INT8_BACKEND = "openvino:int8"


@dataclass
class GateResult:
    """INT8 against fp32 on the same labelled frames, mIoU in percent."""

    fp32_miou: float
    int8_miou: float
    frames: int
    max_drop: float = GATE_MAX_DROP

    @property
    def drop(self) -> float:
        return self.fp32_miou - self.int8_miou

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def to_dict(self) -> dict:
        return {"passed": self.passed, "fp32_miou": round(self.fp32_miou, 4),
                "int8_miou": round(self.int8_miou, 4), "drop": round(self.drop, 4),
                "max_drop": self.max_drop, "frames": self.frames,
                "reference": REFERENCE_BACKEND, "backend": INT8_BACKEND}


def evenly_spaced(count: int, total: int) -> list[int]:
    """`count` indices spread over range(total) (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return [int(index) for index in np.linspace(0, total - 1, count).round()]


def quantize_network(model: torch.nn.Module, metadata: ModelMetadata,
                     frames: Sequence[Callable[[], np.ndarray]]) -> dict[str, bytes]:
    """OpenVINO IR of `model` with INT8 weights and activations in its dense convolutions
    (QUANTIZED_OPERATIONS), calibrated on `frames` (each a function returning an RGB frame,
    read when NNCF asks for it)."""
    require("nncf", "openvino", "onnx", "onnxscript")
    import nncf
    import openvino

    from fbsnet_ros.inference.export import cached_onnx

    transform = FrameTransform(metadata.input_size, metadata.mean, metadata.std)
    network = openvino.Core().read_model(str(cached_onnx(model, metadata)))
    calibration = nncf.Dataset(frames, lambda read: transform.to_input(read()).numpy())
    left_out = sorted({op.get_type_name() for op in network.get_ops()}
                      - set(QUANTIZED_OPERATIONS))
    # MIXED: symmetric weights, asymmetric activations, as NNCF advises for activations that
    # are not ReLU (FBSNet's PReLU).
    quantized = nncf.quantize(network, calibration, preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(frames),
                              ignored_scope=nncf.IgnoredScope(types=left_out, validate=False))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fbsnet_int8.xml"
        openvino.save_model(quantized, path, compress_to_fp16=False)
        return {"xml": path.read_bytes(), "bin": path.with_suffix(".bin").read_bytes()}


def run_gate(model: torch.nn.Module, metadata: ModelMetadata, dataset, indices: Sequence[int],
             progress: Callable[[str], None] | None = None) -> GateResult:
    """CamVid mIoU of eager fp32 and of `openvino:int8` (metadata's INT8 model) on the frames."""
    from fbsnet_ros.evaluation.scoring import report_for, score_frames
    from fbsnet_ros.inference.engine import Segmenter

    scores = {}
    for backend in (REFERENCE_BACKEND, INT8_BACKEND):
        if progress:
            progress(f"accuracy gate: {backend} on {len(indices)} val frames")
        segmenter = Segmenter(model, metadata, device="cpu", backend=backend)
        confusion, count = score_frames(segmenter, (dataset.load(i) for i in indices))
        scores[backend] = report_for(confusion, segmenter.class_names, count)["miou"]
    return GateResult(scores[REFERENCE_BACKEND], scores[INT8_BACKEND], len(indices))


def add_int8_model(model: torch.nn.Module, metadata: ModelMetadata, data_root: str | Path, *,
                   calibration_frames: int | None = None, gate_frames: int | None = None,
                   progress: Callable[[str], None] | None = None) -> GateResult:
    """Quantize on CamVid train, gate on CamVid val, and record both in `metadata`.

    None: CALIBRATION_FRAMES train frames, every val frame for the gate.
    """
    import nncf
    import openvino

    from fbsnet_ros.data.datasets import camvid
    from fbsnet_ros.data.io import read_rgb
    from fbsnet_ros.inference.backends.openvino_backend import openvino_capabilities

    train = camvid(data_root, "train")
    val = camvid(data_root, "val")
    count = calibration_frames or CALIBRATION_FRAMES
    picked = [train.pairs[i][0] for i in evenly_spaced(count, len(train))]
    if progress:
        progress(f"calibrating INT8 on {len(picked)} CamVid train frames")
    metadata.int8_model = quantize_network(
        model, metadata, [lambda path=path: read_rgb(path) for path in picked])
    metadata.int8 = {
        "weights_digest": weights_digest(model), "format": "openvino-ir",
        "calibration": {"dataset": "camvid", "split": "train", "frames": len(picked),
                        "preset": "mixed", "operations": list(QUANTIZED_OPERATIONS)},
        # What runs unquantized runs in this precision, here in the gate and wherever the CPU
        # can (bf16 where it has bf16 arithmetic; f32 elsewhere, which is more precise).
        "rest_precision": "bf16" if "BF16" in openvino_capabilities() else "fp32",
        "versions": runtime_versions("openvino", "nncf"),
        "openvino": openvino.get_version().split("-")[0], "nncf": nncf.__version__,
    }
    indices = evenly_spaced(gate_frames or len(val), len(val))
    result = run_gate(model, metadata, val, indices, progress)
    metadata.int8["gate"] = {**result.to_dict(), "dataset": "camvid", "split": "val"}
    return result
