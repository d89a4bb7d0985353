"""Inference backends: labels agree with eager fp32, BN folding, ONNX export, auto, benchmark."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch

from fbsnet_ros.data.io import read_rgb
from fbsnet_ros.inference import (
    Segmenter,
    default_weights_path,
    load_model,
    save_inference_checkpoint,
)
from fbsnet_ros.inference.backends import (
    AUTO_PREFERENCE,
    BACKENDS,
    BackendSpec,
    BackendUnavailable,
    available_backends,
    backend_choices,
)
from fbsnet_ros.inference.frames import FrameTransform
from fbsnet_ros.inference.fusion import (
    PixelShuffleClassifier,
    count_batch_norms,
    fold_batch_norm,
    inference_network,
)

CPU = torch.device("cpu")
# Share of pixels whose label must equal eager fp32's (issue 5).
MIN_AGREEMENT = 0.995
# Every 10th CamVid val frame from the first: spread over the sequence, fixed across runs.
AGREEMENT_FRAMES = 8
FRAME_STRIDE = 10
# Logit tolerance of the rewrites that are exact in real arithmetic.
LOGIT_TOLERANCE = 1e-4
REFERENCE = "torch:fp32"
# Trained weights give few near-ties, so disagreements measure the backend, not the weights;
# they are tested whenever the package has them.
WEIGHTS = ["random"] + (["trained"] if default_weights_path().is_file() else [])
# A freshly initialised FBSNet labels every pixel with one class (the classifier's bias wins),
# which any backend matches. "diverse" zeroes that bias and gives the batch norms statistics:
# labels then spread over the classes, but with near-ties (median top-2 logit margin ~0.01),
# so it is a fair test only of backends that are exact in real arithmetic (fp32); reduced
# precision is held to the trained weights.
DIVERSE = "diverse"
# The batch-norm statistics' seed: 7 of the 11 classes on the agreement frames with it (3 to 7
# with seeds 0-5; test_diverse_weights_use_many_classes checks it).
DIVERSE_SEED = 2
# The weights every backend's labels are compared on: not "random", whose one class any backend
# that runs at all reproduces.
AGREEMENT_WEIGHTS = [weights for weights in WEIGHTS if weights != "random"] + [DIVERSE]
NO_CUDA = ("CUDA not available: the GPU paths (fp16, CUDA graphs, on-device pre/post-processing, "
           "pinned memory) need a GPU")
# INT8 is held to accuracy (test_int8.py), not to pixel agreement.
CPU_BACKENDS = [spec for spec in available_backends(CPU)
                if spec != REFERENCE and not spec.endswith(":int8")]
# What would run on a GPU with the packages installed here (checked without touching CUDA).
CUDA_BACKENDS = available_backends(torch.device("cuda"))


@pytest.fixture(scope="module")
def val_frames(camvid_root) -> list[np.ndarray]:
    lines = (camvid_root / "val.txt").read_text().splitlines()
    picked = lines[: AGREEMENT_FRAMES * FRAME_STRIDE : FRAME_STRIDE]
    return [read_rgb(camvid_root / line.split()[0]) for line in picked]


@pytest.fixture(scope="module")
def checkpoints(random_checkpoint, small_random_checkpoint, tmp_path_factory) -> dict:
    # "diverse" is the small network: the trained weights hold the whole one to agreement,
    # and its export and compiles take a fraction of the time.
    model, metadata = load_model(small_random_checkpoint)
    randomise_batch_norms(model, seed=DIVERSE_SEED)
    with torch.no_grad():
        model.classifier.bias.zero_()
    diverse = tmp_path_factory.mktemp("weights") / "diverse.pt"
    save_inference_checkpoint(model, metadata, diverse)
    return {"random": random_checkpoint, "trained": default_weights_path(), DIVERSE: diverse}


def randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Fresh batch norms are identities; statistics make folding and labels non-trivial."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.2, generator=generator)


class SegmenterCache:
    """Builds each (weights, backend) once per module: exports and compiles are slow."""

    def __init__(self, checkpoints: dict) -> None:
        self.checkpoints = checkpoints
        self.built: dict = {}

    def get(self, weights: str, backend: str, device: str = "cpu") -> Segmenter:
        key = (weights, backend, device)
        if key not in self.built:
            self.built[key] = Segmenter.from_checkpoint(self.checkpoints[weights], device=device,
                                                        backend=backend)
        return self.built[key]


@pytest.fixture(scope="module")
def segmenters(checkpoints) -> SegmenterCache:
    return SegmenterCache(checkpoints)


@pytest.fixture(scope="module")
def reference_labels(segmenters, val_frames) -> dict:
    return {weights: [segmenters.get(weights, REFERENCE).predict(f) for f in val_frames]
            for weights in AGREEMENT_WEIGHTS}


def agreement(labels: list[np.ndarray], reference: list[np.ndarray]) -> float:
    equal = sum(int((a == b).sum()) for a, b in zip(labels, reference, strict=True))
    return equal / sum(r.size for r in reference)


def test_installed_backends_are_the_ones_requirements_name():
    # requirements.txt installs every runtime: none may silently drop out of the tests.
    assert set(CPU_BACKENDS) >= {"torch-opt:fp32", "onnxruntime:fp32", "openvino:fp32"}


def test_diverse_weights_use_many_classes(reference_labels):
    used = np.unique(np.concatenate([labels.ravel() for labels in reference_labels[DIVERSE]]))
    assert len(used) >= 5, f"the 'diverse' model only predicts classes {used.tolist()}"


@pytest.mark.parametrize(("weights", "backend"), [
    (weights, backend) for backend in CPU_BACKENDS for weights in AGREEMENT_WEIGHTS
    if weights != DIVERSE or backend.endswith(":fp32")])
def test_labels_agree_with_eager_fp32(segmenters, val_frames, reference_labels, weights,
                                      backend):
    segmenter = segmenters.get(weights, backend)
    labels = [segmenter.predict(frame) for frame in val_frames]
    for frame, label in zip(val_frames, labels, strict=True):
        assert label.shape == frame.shape[:2] and label.dtype == np.uint8
    share = agreement(labels, reference_labels[weights])
    print(f"{backend} with {weights} weights: {100 * share:.3f} % of pixels agree")
    assert share >= MIN_AGREEMENT, f"{backend}: only {100 * share:.3f} % agree with eager fp32"


def test_the_path_before_issue_15_agrees_with_eager_fp32(checkpoints, val_frames,
                                                        reference_labels):
    """The benchmark's baseline (`--host-pre-post`): OpenVINO with pre/post on the host and the
    network exported with its channel shuffles, as it ran before they were folded. On the
    small network, which has every kind of block the rewrites touch and exports faster."""
    weights = DIVERSE
    segmenter = Segmenter.from_checkpoint(checkpoints[weights], device="cpu",
                                          backend="openvino:fp32",
                                          backend_options={"frame_graph": False})
    assert "the network as trained" in segmenter.backend.describe()
    labels = [segmenter.predict(frame) for frame in val_frames]
    assert agreement(labels, reference_labels[weights]) >= MIN_AGREEMENT


def test_every_auto_choice_is_tested_for_agreement():
    # auto may only choose what test_labels_agree_with_eager_fp32 checks on this machine.
    for spec in AUTO_PREFERENCE["cpu"]:
        if spec in available_backends(CPU) and not spec.endswith(":int8"):
            assert spec == REFERENCE or spec in CPU_BACKENDS


def test_frame_normalisation_matches_training(val_frames):
    from fbsnet_ros.data.classes import IMAGENET_MEAN, IMAGENET_STD
    from fbsnet_ros.data.transforms import normalise

    frame = val_frames[0]
    transform = FrameTransform(frame.shape[:2], IMAGENET_MEAN, IMAGENET_STD)
    expected = normalise(frame, IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(transform.to_input(frame)[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_batch_norm_folding_keeps_logits(checkpoints, val_frames, weights):
    model, metadata = load_model(checkpoints[weights])
    if weights == "random":
        randomise_batch_norms(model)
    state_before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folded = fold_batch_norm(model)
    assert count_batch_norms(folded) < count_batch_norms(model)
    for name, tensor in model.state_dict().items():  # the original keeps its layout and values
        assert torch.equal(tensor, state_before[name]), name
    assert model.state_dict().keys() == state_before.keys()
    transform = FrameTransform((360, 480), metadata.mean, metadata.std)
    batch = torch.cat([transform.to_input(frame) for frame in val_frames[:2]])
    with torch.inference_mode():
        expected = model(batch)
        actual = folded(batch)
    torch.testing.assert_close(actual, expected, atol=LOGIT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("weights", [*WEIGHTS, "paper-table1"])
def test_inference_rewrites_keep_logits(checkpoints, val_frames, weights, monkeypatch):
    """fusion.inference_network: channel shuffles folded into the weights, the classifier as
    a 1x1 conv and a pixel shuffle; the original's state is untouched."""
    import fbsnet_ros.model.blocks as blocks
    from fbsnet_ros.model import build_fbsnet

    if weights == "paper-table1":  # other widths, depths and a 16-wide last decoder stage
        model = build_fbsnet(num_classes=11, variant="paper-table1")
        metadata = load_model(checkpoints["random"])[1]
    else:
        model, metadata = load_model(checkpoints[weights])
    if weights != "trained":  # statistics and slopes that differ per channel
        randomise_batch_norms(model)
        for prelu in (m for m in model.modules() if isinstance(m, torch.nn.PReLU)):
            prelu.weight.data.uniform_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    model.eval()
    state_before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rewritten = inference_network(model)
    for name, tensor in model.state_dict().items():  # the original keeps its layout and values
        assert torch.equal(tensor, state_before[name]), name
    assert isinstance(rewritten.classifier, PixelShuffleClassifier)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) and m.stride == m.kernel_size
                   for m in rewritten.modules())
    transform = FrameTransform((360, 480), metadata.mean, metadata.std)
    batch = torch.cat([transform.to_input(frame) for frame in val_frames[:2]])
    with torch.inference_mode():
        expected = model(batch)
        shuffles = []
        monkeypatch.setattr(blocks, "channel_shuffle", lambda x, g: shuffles.append(g) or x)
        actual = rewritten(batch)
    assert not shuffles
    torch.testing.assert_close(actual, expected, atol=LOGIT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("scale", [2, 4])
def test_pixel_shuffle_classifier_is_the_transposed_conv(scale):
    generator = torch.Generator().manual_seed(scale)
    deconv = torch.nn.ConvTranspose2d(6, 5, scale, stride=scale)
    with torch.no_grad():
        deconv.weight.normal_(generator=generator)
        deconv.bias.normal_(generator=generator)
    x = torch.randn(2, 6, 7, 9, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(PixelShuffleClassifier(deconv)(x), deconv(x),
                                   atol=1e-5, rtol=0)
    for overlapping in (torch.nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1),
                        torch.nn.ConvTranspose2d(6, 5, 2, stride=1)):
        with pytest.raises(ValueError, match="kernel equals its stride"):
            PixelShuffleClassifier(overlapping)


@pytest.mark.skipif("openvino" not in {spec.split(":")[0] for spec in CPU_BACKENDS},
                    reason="OpenVINO is not installed (requirements name it: see the test above)")
def test_openvino_bf16_runs_the_network_in_bf16(random_checkpoint):
    """Under a bf16 hint OpenVINO keeps in f32 what it reaches searching back from the outputs
    to a convolution; with the classifier as a convolution that is only the pixel shuffle, not
    the residual paths through the whole network (fusion.PixelShuffleClassifier)."""
    import openvino

    from fbsnet_ros.inference.backends.openvino_backend import (
        openvino_capabilities,
        read_network,
    )

    if "BF16" not in openvino_capabilities():
        pytest.skip("this CPU has no bf16 arithmetic: OpenVINO runs its bf16 hint in f32")
    core = openvino.Core()
    model, metadata = load_model(random_checkpoint)
    network = read_network(core, model, metadata, "fp32")
    network.reshape({network.input(0).get_any_name(): [1, 3, 96, 128]})
    compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    computing = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = str(info["layerType"].value)
        if kind not in {"Input", "Output", "Const", "Reorder", "Reshape"}:
            computing[op.get_friendly_name()] = (kind, str(info["runtimePrecision"].value))
    in_f32 = {name: kind for name, (kind, precision) in computing.items() if precision == "f32"}
    assert len(computing) > 500  # the whole network, not a stub
    assert sorted(in_f32.values()) == ["DepthToSpace"], in_f32


@pytest.mark.parametrize("upsample, frame_size", [("bilinear", (96, 128)),
                                                   ("nearest", (150, 200))])
def test_openvino_maps_are_taken_before_the_pixel_shuffle(checkpoints, val_frames, monkeypatch,
                                                          upsample, frame_size):
    """Labels and confidence from the classifier's output grouped by class, then rearranged as
    uint8 maps: the same maps as argmax after the pixel shuffle, without its float logits."""
    import cv2

    from fbsnet_ros.inference.backends import openvino_backend
    from fbsnet_ros.inference.backends.base import GraphShape

    backend = Segmenter.from_checkpoint(checkpoints[DIVERSE], device="cpu", upsample=upsample,
                                        backend="openvino:fp32").backend
    shape = GraphShape(*frame_size, confidence=True)

    def compiled(graph):
        return backend.core.compile_model(graph, "CPU", backend.config)

    rewritten = compiled(openvino_backend.frame_to_labels_graph(backend.network,
                                                                backend.transform, shape))
    shuffles = [(str(op.get_rt_info()["outputPrecisions"].value))
                for op in rewritten.get_runtime_model().get_ordered_ops()
                if str(op.get_rt_info()["layerType"].value) == "DepthToSpace"]
    assert shuffles and all("f32" not in precision for precision in shuffles), shuffles
    monkeypatch.setattr(openvino_backend, "pixel_shuffled_classes", lambda logits: None)
    plain = compiled(openvino_backend.frame_to_labels_graph(backend.network, backend.transform,
                                                            shape))
    height, width = backend.transform.input_size
    for frame in val_frames[:3]:
        frame = np.ascontiguousarray(cv2.resize(frame, (width, height)))[np.newaxis]
        ours, theirs = rewritten.create_infer_request(), plain.create_infer_request()
        ours.infer({0: frame})
        theirs.infer({0: frame})
        for name in ("labels", "confidence"):
            assert ours.get_tensor(name).data.shape == (1, *frame_size)
            np.testing.assert_array_equal(ours.get_tensor(name).data,
                                          theirs.get_tensor(name).data)


def test_onnx_export_has_dynamic_batch_height_and_width(random_checkpoint, val_frames,
                                                       tmp_path):
    import onnx
    import onnxruntime

    from fbsnet_ros.cli import main

    path = tmp_path / "fbsnet.onnx"
    assert main(["export", "--format", "onnx", "--weights", str(random_checkpoint),
                 "--output", str(path)]) == 0
    graph = onnx.load(str(path))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    input_dims = [dim.dim_param or dim.dim_value for dim in dims]
    assert input_dims == ["batch", 3, "height", "width"]
    properties = {entry.key: json.loads(entry.value) for entry in graph.metadata_props}
    model, metadata = load_model(random_checkpoint)
    assert properties["class_names"] == list(metadata.class_names)
    assert properties["mean"] == list(metadata.mean)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size, frames in [((96, 128), 1), ((360, 480), 1), ((96, 128), 3)]:
        transform = FrameTransform(size, properties["mean"], properties["std"])
        batch = torch.cat([transform.to_input(frame) for frame in val_frames[:frames]])
        (logits,) = session.run(None, {"image": batch.numpy()})
        with torch.inference_mode():
            expected = model(batch)
        assert logits.shape == (frames, len(metadata.class_names), *size)
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=LOGIT_TOLERANCE,
                                   rtol=0)


def test_auto_picks_an_installed_backend_that_works(random_checkpoint, val_frames, caplog):
    with caplog.at_level(logging.INFO, logger="fbsnet_ros"):
        segmenter = Segmenter.from_checkpoint(random_checkpoint, device="cpu", backend="auto")
    assert segmenter.backend_name in available_backends(CPU)
    # The random weights hold no INT8 model: auto passes over int8 (test_int8.py).
    assert segmenter.backend_name == next(
        spec for spec in AUTO_PREFERENCE["cpu"]
        if spec in available_backends(CPU) and not spec.endswith(":int8"))
    assert f"backend auto chose {segmenter.backend_name}" in caplog.text
    assert segmenter.predict(val_frames[0]).shape == val_frames[0].shape[:2]


def test_auto_skips_a_backend_that_fails_to_build(random_checkpoint, monkeypatch, caplog):
    failing = {spec.partition(":")[0] for spec in AUTO_PREFERENCE["cpu"][:-1]}

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated runtime failure")

    for name in failing:
        monkeypatch.setattr(BACKENDS[name], "__init__", broken)
    with caplog.at_level(logging.INFO, logger="fbsnet_ros"):
        segmenter = Segmenter.from_checkpoint(random_checkpoint, device="cpu", backend="auto")
    assert segmenter.backend_name == AUTO_PREFERENCE["cpu"][-1]
    assert "simulated runtime failure" in caplog.text


def test_backend_names_and_precisions_are_checked(random_checkpoint):
    assert BackendSpec.parse("openvino:bf16") == BackendSpec("openvino", "bf16")
    assert str(BackendSpec.parse("torch")) == "torch"
    for bad in ("tensorflow", "torch:int4", "auto:fp16"):
        with pytest.raises(ValueError):
            BackendSpec.parse(bad)
    with pytest.raises(BackendUnavailable, match="fp16"):
        Segmenter.from_checkpoint(random_checkpoint, device="cpu", backend="torch:fp16")
    with pytest.raises(BackendUnavailable, match="cuda"):
        BACKENDS["openvino"].check(torch.device("cuda"), "fp32")
    assert {"auto", "torch", "openvino:bf16", "torch-opt:fp16"} <= set(backend_choices())


def test_cli_reports_an_unavailable_backend_in_one_line(random_checkpoint, tmp_path, capsys):
    from fbsnet_ros.cli import EXIT_USER_ERROR, main

    (tmp_path / "in").mkdir()
    status = main(["predict", "--weights", str(random_checkpoint), "--device", "cpu",
                   "--backend", "torch:fp16", "--input", str(tmp_path / "in"),
                   "--output", str(tmp_path / "out")])
    assert status == EXIT_USER_ERROR
    assert "torch" in capsys.readouterr().err


def test_benchmark_reports_every_backend_against_eager(checkpoints, camvid_root, tmp_path,
                                                       capsys):
    from fbsnet_ros.cli import main

    # The weights the agreement tests above use: their exports are in this run's cache.
    weights = checkpoints[WEIGHTS[-1]]
    report_path = tmp_path / "bench.json"
    assert main(["benchmark", "--weights", str(weights), "--device", "cpu",
                 "--backends", "torch", "openvino", "--sizes", "64x96", "--iterations", "2",
                 "--warmup", "1", "--data-root", str(camvid_root), "--json",
                 str(report_path), "--host-pre-post", "openvino"]) == 0
    printed = capsys.readouterr().out
    assert "torch:fp32" in printed and "openvino:fp32" in printed and "GFLOPs" in printed
    assert re.search(r"frame to labels: \d+\.\d\dx faster than openvino:fp32 host", printed)
    report = json.loads(report_path.read_text())
    (size,) = report["sizes"]
    assert size["frame_size"] == [64, 96] and size["input_size"] == [64, 96]
    complexity = size["complexity"]
    assert complexity["flops"] == 2 * complexity["macs"] > 0
    model, _ = load_model(weights)
    assert complexity["params"] == sum(p.numel() for p in model.parameters())
    names = [entry["backend"] for entry in size["backends"]]
    assert names == ["torch:fp32", "openvino:fp32", "openvino:fp32 host"]
    reference = size["backends"][0]
    assert reference["end_to_end"]["ratio_to_reference"] == pytest.approx(1.0)
    for entry in size["backends"]:
        assert entry["end_to_end"]["calls"] == 2 and entry["end_to_end"]["median_ms"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize(("weights", "backend"), [
    (weights, backend) for backend in CUDA_BACKENDS for weights in AGREEMENT_WEIGHTS
    if weights != DIVERSE or backend.endswith(":fp32")])
def test_cuda_labels_agree_with_cpu_eager_fp32(segmenters, val_frames, reference_labels,
                                               weights, backend):
    segmenter = segmenters.get(weights, backend, device="cuda")
    labels = [segmenter.predict(frame) for frame in val_frames]
    share = agreement(labels, reference_labels[weights])
    print(f"cuda {backend} with {weights} weights: {100 * share:.3f} % of pixels agree")
    assert share >= MIN_AGREEMENT


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_cuda_graphs_follow_frame_size_and_upsampling(random_checkpoint, val_frames, upsample):
    reference = Segmenter.from_checkpoint(random_checkpoint, device="cpu", upsample=upsample)
    graphed = Segmenter.from_checkpoint(random_checkpoint, device="cuda", backend="torch-opt:fp32",
                                        upsample=upsample)
    import cv2

    for size in [(360, 480), (123, 457), (96, 128)]:
        frame = cv2.resize(val_frames[1], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        expected = reference.predict(frame)
        first = graphed.predict(frame)
        again = graphed.predict(frame)  # replay of the captured graph, not a new capture
        assert first.shape == size and np.array_equal(first, again)
        assert (first == expected).mean() >= MIN_AGREEMENT
