"""Confidence images, the confidence threshold and batches of frames, on every CPU backend.

The confidence of a pixel is its top softmax probability scaled to 0-255; pixels below the
threshold are labelled UNLABELED (255); several frames (several cameras) run as one batch where
the backend can, with the same results as one at a time. Checked on camera-sized CamVid frames
with the shipped weights against an independent computation from the eager model's logits.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fbsnet_ros.data.classes import UNLABELED
from fbsnet_ros.data.io import read_rgb
from fbsnet_ros.inference import Segmenter, colorize, default_weights_path, load_model
from fbsnet_ros.inference.backends import available_backends

CPU = torch.device("cpu")
REFERENCE = "torch:fp32"
# torch-opt on the CPU decodes on the host exactly as eager torch and ONNX Runtime do (checked
# here); compiling it again for this module would cost the suite most of a minute.
BACKENDS = [spec for spec in available_backends(CPU) if not spec.startswith("torch-opt")]
# Camera sizes the frames are resized to: two cameras of different resolutions.
CAMERA_SIZES = ((480, 640), (720, 1280))
# How far a backend's confidence may be from eager fp32's, in 0-255 steps, at pixels whose
# labels agree: fp32 backends differ by rounding only; bf16 and INT8 change the logits.
CONFIDENCE_TOLERANCE = {"fp32": (1, 1), "bf16": (2, 16), "int8": (4, 64)}  # (median, p99.9)
# Labels may differ where two classes are near-tied.
MIN_LABEL_AGREEMENT = {"fp32": 0.999, "bf16": 0.995, "int8": 0.95}

pytestmark = pytest.mark.skipif(not default_weights_path().is_file(),
                                reason="the package's shipped weights are not installed")


@pytest.fixture(scope="module")
def frames(camvid_root) -> list[np.ndarray]:
    lines = (camvid_root / "val.txt").read_text().splitlines()
    images = [read_rgb(camvid_root / lines[index].split()[0]) for index in (0, 50)]
    return [cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            for image, (height, width) in zip(images, CAMERA_SIZES, strict=True)]


@pytest.fixture(scope="module")
def segmenters():
    built: dict[str, Segmenter] = {}

    def get(backend: str) -> Segmenter:
        if backend not in built:
            built[backend] = Segmenter.from_checkpoint(None, device="cpu", backend=backend)
        return built[backend]

    return get


def test_confidence_is_the_top_softmax_probability(frames):
    # Independently of the engine: the model's logits, resized to the frame, softmax.
    segmenter = Segmenter.from_checkpoint(None, device="cpu", backend=REFERENCE)
    model, metadata = load_model(default_weights_path())
    frame = frames[0]
    height, width = segmenter.input_size
    resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    pixels = torch.from_numpy(resized).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mean = torch.tensor(metadata.mean).view(1, 3, 1, 1)
    std = torch.tensor(metadata.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model.eval()((pixels - mean) / std)
    logits = F.interpolate(logits, size=frame.shape[:2], mode="bilinear", align_corners=False)
    probabilities = F.softmax(logits, dim=1)[0]
    expected = np.rint(255 * probabilities.amax(0).numpy())

    result = segmenter.segment(frame, confidence=True)
    assert result.confidence.shape == frame.shape[:2] and result.confidence.dtype == np.uint8
    assert np.abs(result.confidence.astype(int) - expected).max() <= 1
    assert np.array_equal(result.labels, segmenter.predict(frame))
    # A trained model is sure of most pixels and unsure at borders: both must show.
    assert np.median(result.confidence) > 200 and result.confidence.min() < 128
    # Without asking, no confidence is computed.
    assert segmenter.segment(frame).confidence is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_returns_the_confidence(segmenters, frames, backend):
    precision = backend.split(":")[1]
    reference, segmenter = segmenters(REFERENCE), segmenters(backend)
    for frame in frames:
        expected = reference.segment(frame, confidence=True)
        result = segmenter.segment(frame, confidence=True)
        assert result.confidence.shape == frame.shape[:2]
        assert result.confidence.dtype == np.uint8
        same = result.labels == expected.labels
        assert same.mean() >= MIN_LABEL_AGREEMENT[precision], f"{backend}: {same.mean():.4f}"
        difference = np.abs(result.confidence.astype(int) - expected.confidence)[same]
        median_bound, tail_bound = CONFIDENCE_TOLERANCE[precision]
        print(f"{backend} {frame.shape[:2]}: confidence median difference "
              f"{np.median(difference)}, p99.9 {np.percentile(difference, 99.9)}")
        assert np.median(difference) <= median_bound
        assert np.percentile(difference, 99.9) <= tail_bound


# The reference and an in-graph decoder (OpenVINO, what auto picks on a CPU).
@pytest.mark.parametrize("backend", [REFERENCE, *[b for b in BACKENDS
                                                  if b.startswith("openvino:")][:1]])
def test_threshold_unlabels_exactly_the_unsure_pixels(segmenters, frames, backend):
    segmenter = segmenters(backend)
    frame = frames[0]
    plain = segmenter.segment(frame, confidence=True)
    assert not (plain.labels == UNLABELED).any()
    for threshold in (0.5, 0.9):
        result = segmenter.segment(frame, threshold=threshold)
        unsure = plain.confidence < 255 * threshold
        assert 0 < unsure.mean() < 0.5, "the frame must have sure and unsure pixels"
        assert np.array_equal(result.labels == UNLABELED, unsure)
        assert np.array_equal(result.labels[~unsure], plain.labels[~unsure])
    # Threshold 0 is off; 1 leaves only pixels the model is certain of (255 after rounding).
    assert np.array_equal(segmenter.segment(frame, threshold=0.0).labels, plain.labels)
    certain = segmenter.segment(frame, threshold=1.0)
    assert np.array_equal(certain.labels != UNLABELED, plain.confidence == 255)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_threshold_outside_zero_one_is_refused(segmenters, frames, threshold):
    with pytest.raises(ValueError, match="confidence threshold must be within"):
        segmenters(REFERENCE).segment(frames[0], threshold=threshold)


def test_unlabeled_pixels_are_drawn_black(segmenters):
    palette = segmenters(REFERENCE).palette
    labels = np.array([[0, UNLABELED], [3, UNLABELED]], np.uint8)
    mask = colorize(labels, palette)
    assert (mask[:, 1] == 0).all()
    assert (mask[:, 0] != 0).any(axis=1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_cameras_gives_what_each_frame_gives_alone(segmenters, frames, backend):
    segmenter = segmenters(backend)
    # Three cameras: two of one size and one of another, as a car's might be.
    cameras = [frames[0], np.ascontiguousarray(frames[0][:, ::-1]), frames[1]]
    batched = segmenter.segment_batch(cameras, confidence=True)
    assert len(batched) == len(cameras)
    for frame, result in zip(cameras, batched, strict=True):
        alone = segmenter.segment(frame, confidence=True)
        assert result.labels.shape == frame.shape[:2]
        # Batched convolutions may round differently: near-ties can flip, nothing more.
        assert (result.labels == alone.labels).mean() >= 0.9995
        assert np.abs(result.confidence.astype(int) - alone.confidence).max() <= 8
    backend_object = segmenter.backend
    if backend.split(":")[0] in ("torch", "openvino") and not backend.endswith(":int8"):
        assert backend_object.batching, f"{backend} should batch cameras"
    if not backend_object.batching:
        assert backend_object.batching_refusal, f"{backend} must say why it cannot batch"


def test_evaluate_counts_unlabeled_pixels_as_wrong(camvid_root, tmp_path):
    from fbsnet_ros.cli import main

    reports = {}
    for threshold in ("0", "0.9"):
        path = tmp_path / f"report_{threshold}.json"
        assert main(["evaluate", "--data-root", str(camvid_root), "--split", "val", "--limit",
                     "3", "--device", "cpu", "--confidence-threshold", threshold,
                     "--report", str(path)]) == 0
        reports[threshold] = json.loads(path.read_text())
    assert reports["0.9"]["confidence_threshold"] == 0.9
    # Roughly a tenth of the pixels is below 0.9 (test_threshold_...): all of them now wrong.
    drop = reports["0"]["pixel_accuracy"] - reports["0.9"]["pixel_accuracy"]
    assert drop > 2.0, reports
    assert reports["0.9"]["miou"] < reports["0"]["miou"]
