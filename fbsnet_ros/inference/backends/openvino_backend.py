"""OpenVINO: the whole frame-to-labels path in one compiled graph, in fp32, bf16 or INT8.

The graph takes the uint8 RGB frame already resized to the network input (NHWC, as the frame
arrives) and returns uint8 labels at the frame's size: the uint8-to-float conversion and the
normalisation are folded in front of the first convolution, and the upsampling and argmax
follow the network, so nothing but the resize runs in Python. One graph is compiled per frame
size (a camera rarely changes size); OpenVINO's model cache keeps the compiled graphs on disk
between runs.
"""

from __future__ import annotations

import functools
import logging
from typing import ClassVar

import numpy as np
import torch

from fbsnet_ros.checkpoint import ModelMetadata
from fbsnet_ros.inference.artefacts import cache_dir, weights_digest
from fbsnet_ros.inference.backends.base import (
    Backend,
    BackendUnavailable,
    GraphShape,
    PerFrameSize,
    require,
)
from fbsnet_ros.inference.backends.cuda_graphs import nearest_indices
from fbsnet_ros.inference.frames import FrameTransform, Segmentation

log = logging.getLogger(__name__)

# How a user makes the INT8 model that `openvino:int8` runs (it needs calibration frames).
QUANTIZE_COMMAND = "fbsnet-ros quantize --weights WEIGHTS --output WEIGHTS_INT8"


@functools.cache
def openvino_capabilities() -> tuple[str, ...]:
    import openvino

    return tuple(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def openvino_core():
    """An OpenVINO Core whose compiled models are cached on disk.

    OpenVINO keys each cached blob by the model (graph and weights, so also input and frame
    size), the compile options (precision), the device and its own version; a blob it cannot
    import is compiled again and replaced.
    """
    import openvino

    core = openvino.Core()
    folder = cache_dir() / "openvino"
    folder.mkdir(parents=True, exist_ok=True)
    core.set_property({"CACHE_DIR": str(folder)})
    return core


def int8_rest_precision(metadata: ModelMetadata) -> str:
    """The precision of what the INT8 model leaves unquantized: the one its gate measured
    (models made before the gate recorded it: fp32), and fp32 on a CPU without bf16."""
    measured = metadata.int8.get("rest_precision", "fp32")
    return "bf16" if measured == "bf16" and "BF16" in openvino_capabilities() else "fp32"


def int8_refusal(metadata: ModelMetadata) -> str | None:
    """Why these weights' INT8 model must not be chosen automatically (None: it may)."""
    if metadata.int8_model is None:
        return f"the weights hold no INT8 model (make one with `{QUANTIZE_COMMAND}`)"
    gate = metadata.int8.get("gate", {})
    if not gate.get("passed"):
        return (f"the INT8 model failed its accuracy gate (CamVid val mIoU "
                f"{gate.get('int8_miou')} vs fp32 {gate.get('fp32_miou')})" if gate
                else "the INT8 model records no accuracy gate")
    return None


def read_network(core, model: torch.nn.Module, metadata: ModelMetadata, precision: str, *,
                 rewritten: bool = True):
    """The network as an openvino.Model (input 1x3xHxW normalised float, output logits);
    `rewritten=False`: the checkpoint's network as it is, without fusion.inference_network's
    rewrites, as exported before (not INT8, whose model is the one in the weights)."""
    if precision != "int8":
        from fbsnet_ros.inference.export import cached_onnx

        return core.read_model(str(cached_onnx(model, metadata, rewritten=rewritten)))
    import openvino

    if metadata.int8_model is None:
        raise BackendUnavailable(f"openvino:int8: these weights hold no INT8 model; make one "
                                 f"with `{QUANTIZE_COMMAND}` (calibrates on CamVid frames)")
    if metadata.int8.get("weights_digest") != weights_digest(model):
        raise BackendUnavailable(f"openvino:int8: the INT8 model in these weights was made "
                                 f"from other weights; make it again with `{QUANTIZE_COMMAND}`")
    ir = metadata.int8_model
    return core.read_model(model=bytes(ir["xml"]), weights=openvino.Tensor(
        np.frombuffer(bytes(ir["bin"]), np.uint8).copy()))


def frame_to_labels_graph(network, transform: FrameTransform, shape: GraphShape):
    """`network` with the frames' pre- and post-processing around it, at fixed sizes.

    In: 'frame' 1xhxwx3 uint8 RGB at the input size. Out: 'labels' 1xHxW uint8 at the shape's
    frame size, decoded as FrameTransform.decode does (bilinear: logits
    resized with half-pixel centres, then argmax; nearest: argmax, then cv2 INTER_NEAREST's
    pick of source pixels), and with shape.confidence also 'confidence' NxHxW uint8, the top
    softmax probability scaled to 0-255 (frames.confidence_from_logits), 1xHxW uint8.
    """
    import openvino
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    graph = network.clone()
    graph.reshape({graph.input(0).get_any_name(): [1, 3, *transform.input_size]})
    steps = PrePostProcessor(graph)
    steps.input().tensor().set_element_type(openvino.Type.u8).set_layout(openvino.Layout("NHWC"))
    steps.input().model().set_layout(openvino.Layout("NCHW"))
    # (x - 255 mean) / (255 std) = (x / 255 - mean) / std, the training normalisation.
    scale = (1.0 / transform.scale).flatten().tolist()
    mean = (-transform.shift.flatten() * (1.0 / transform.scale).flatten()).tolist()
    steps.input().preprocess().convert_element_type(openvino.Type.f32).mean(mean).scale(scale)
    graph = steps.build()
    logits = graph.get_results()[0].input_value(0)  # (N, K, h, w) float
    height, width = shape.frame_size
    resize_logits = (transform.upsample == "bilinear"
                     and shape.frame_size != transform.input_size)
    if resize_logits:
        logits = ops.interpolate(
            logits, ops.constant(np.array([height, width], np.int64)), "linear_onnx",
            "sizes", coordinate_transformation_mode="pytorch_half_pixel",
            axes=ops.constant(np.array([2, 3], np.int64))).output(0)
    shuffled = None if resize_logits else pixel_shuffled_classes(logits)
    if shuffled is not None:
        # Per pixel maps do not care where a pixel's logits sit: take them from the
        # classifier's (N, K*b*b, h/b, w/b) output, grouped (N, K, b*b, h/b, w/b), and
        # rearrange only the uint8 maps. The full-size float logits are never written.
        logits, block = shuffled
    # TopK with k=1 is OpenVINO's argmax: the index output is the label, the value the maximum.
    top = ops.topk(logits, 1, 1, "max", "none", "i32")
    maps = {"labels": ops.convert(ops.squeeze(top.output(1), [1]), "u8").output(0)}
    if shape.confidence:
        logits = ops.convert(logits, "f32")
        top_value = ops.convert(top.output(0), "f32")
        total = ops.reduce_sum(ops.exp(ops.subtract(logits, top_value)), [1], False)
        probability_255 = ops.divide(ops.constant(np.float32(255.0)), total)
        maps["confidence"] = ops.convert(ops.round(probability_255, "half_to_even"),
                                         "u8").output(0)
    if shuffled is not None:
        for name, values in maps.items():  # (1, b*b, h/b, w/b) -> (1, h, w)
            maps[name] = ops.squeeze(ops.depth_to_space(values, "depth_first", block),
                                     [1]).output(0)
    if not resize_logits and shape.frame_size != transform.input_size:
        rows = nearest_indices(transform.input_size[0], height).numpy()
        cols = nearest_indices(transform.input_size[1], width).numpy()
        for name, values in maps.items():  # (1, h', w')
            values = ops.gather(values, ops.constant(rows), 1).output(0)
            maps[name] = ops.gather(values, ops.constant(cols), 2).output(0)
    results = []
    for name, values in maps.items():
        result = ops.result(values)
        result.output(0).get_tensor().set_names({name})
        results.append(result)
    graph = openvino.Model(results, graph.get_parameters(), "fbsnet_frame_to_labels")
    graph.input(0).get_tensor().set_names({"frame"})
    return graph


def pixel_shuffled_classes(logits):
    """When `logits` come from a pixel shuffle (DepthToSpace, depth-first, as
    PixelShuffleClassifier exports): its input grouped by class, (N, K, b*b, h/b, w/b), and the
    block size b; otherwise None. Static shapes only."""
    import openvino.opset13 as ops

    node = logits.get_node()
    if node.get_type_name() != "DepthToSpace" or logits.get_partial_shape().is_dynamic:
        return None
    attributes = node.get_attributes()
    if attributes["mode"] != "depth_first":
        return None
    block = int(attributes["block_size"])
    source = node.input_value(0)
    batch, channels, height, width = source.get_shape()
    grouped = ops.reshape(source, ops.constant(np.array(
        [batch, channels // (block * block), block * block, height, width], np.int64)), False)
    return grouped.output(0), block


class OpenVinoBackend(Backend):
    """OpenVINO's CPU plugin: frame to labels in one graph; fp32, bf16 or INT8 (NNCF)."""

    name = "openvino"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32", "bf16", "int8")}
    # OpenVINO's inference precision per ours. INT8's is what its accuracy gate measured for
    # the unquantized rest (int8_rest_precision).
    INFERENCE_PRECISION: ClassVar[dict[str, str]] = {"fp32": "f32", "bf16": "bf16"}

    @classmethod
    def check(cls, device, precision) -> None:
        super().check(device, precision)
        # INT8 reads its model from the checkpoint; the others export ONNX first.
        require(*(("openvino",) if precision == "int8" else ("openvino", "onnx", "onnxscript")))
        if precision == "bf16" and "BF16" not in openvino_capabilities():
            raise BackendUnavailable("this CPU has no native bf16 (OpenVINO reports "
                                     f"{openvino_capabilities()})")

    @classmethod
    def auto_refusal(cls, precision, metadata) -> str | None:
        return int8_refusal(metadata) if precision == "int8" else None

    def __init__(self, model, metadata, transform, device, precision, threads=0, *,
                 frame_graph: bool = True) -> None:
        """`frame_graph=False`: the path before issue 15, for benchmarks: pre- and
        post-processing on the host, and the network exported with its channel shuffles."""
        super().__init__(model, metadata, transform, device, precision, threads)
        import openvino

        self.version = openvino.get_version().split("-")[0]
        self.core = openvino_core()
        self.network = read_network(self.core, model, metadata, precision,
                                    rewritten=frame_graph)
        if precision == "int8" and metadata.int8.get("gate") and int8_refusal(metadata):
            log.warning("openvino:int8 chosen explicitly although %s", int8_refusal(metadata))
        # Set explicitly: on CPUs with bf16 OpenVINO would otherwise pick bf16 by itself.
        self.rest_precision = (int8_rest_precision(metadata) if precision == "int8"
                               else precision)
        self.config = {"INFERENCE_PRECISION_HINT": self.INFERENCE_PRECISION[self.rest_precision],
                       "PERFORMANCE_HINT": "LATENCY"}
        if threads > 0:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.frame_graph = frame_graph
        if not frame_graph:
            self.batching, self.batching_refusal = False, "pre/post on the host runs one frame"
        self._frame_graphs = PerFrameSize(self._compile_frame_graph,
                                          "an OpenVINO frame-to-labels graph")
        # Several cameras: the same graph compiled for throughput (parallel streams, each on
        # its share of the cores), fed through a queue of asynchronous requests.
        self._stream_queues = PerFrameSize(self._compile_stream_queue,
                                           "OpenVINO frame-to-labels streams")
        self._network_request = None

    def describe(self) -> str:
        where = ("pre/post in the graph" if self.frame_graph else "pre/post on the host"
                 + ("" if self.precision == "int8" else ", the network as trained"))
        if self.precision == "int8":
            where += f", the unquantized rest in {self.rest_precision}"
        return f"{self.spec} on {self.device} (OpenVINO {self.version}, {where})"

    def segment(self, image: np.ndarray, confidence: bool = False) -> Segmentation:
        if not self.frame_graph:
            return super().segment(image, confidence)
        request = self._frame_graphs.get(image.shape[:2], confidence)
        frame = np.ascontiguousarray(self.transform.resize(image))[np.newaxis]
        request.infer({0: frame}, share_inputs=True)
        return _result(request, confidence)

    def segment_batch(self, images: list[np.ndarray], confidence: bool = False
                      ) -> list[Segmentation]:
        """Several cameras' frames at once: OpenVINO's throughput streams run them in parallel
        (on a 2-core CPU two streams of one thread each: 1.2x-1.45x the frames per second of
        one frame after another with two threads, measured here). A frame alone, or alone at
        its size, takes the latency path."""
        if not self.batching or len(images) == 1:
            return [self.segment(image, confidence) for image in images]
        results: list[Segmentation | None] = [None] * len(images)
        sizes: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            sizes.setdefault(image.shape[:2], []).append(index)
        for size, indices in sizes.items():
            if len(indices) == 1:
                results[indices[0]] = self.segment(images[indices[0]], confidence)
                continue
            queue = self._stream_queues.get(size, confidence)

            def keep(request, index, confidence=confidence):
                results[index] = _result(request, confidence)

            queue.set_callback(keep)
            for index in indices:
                frame = np.ascontiguousarray(self.transform.resize(images[index]))[np.newaxis]
                queue.start_async({0: frame}, index)
            queue.wait_all()
        return results

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        if self._network_request is None:
            network = self.network.clone()
            network.reshape({network.input(0).get_any_name(): [1, 3, *self.transform.input_size]})
            compiled = self.core.compile_model(network, "CPU", self.config)
            self._network_request = compiled.create_infer_request()
        self._network_request.infer({0: batch.numpy()}, share_inputs=True)
        # A view of OpenVINO's output buffer, valid until the next call: decoded right away.
        return torch.from_numpy(self._network_request.get_output_tensor(0).data)

    def _compile_frame_graph(self, shape: GraphShape):
        graph = frame_to_labels_graph(self.network, self.transform, shape)
        return self.core.compile_model(graph, "CPU", self.config).create_infer_request()

    def _compile_stream_queue(self, shape: GraphShape):
        import openvino

        graph = frame_to_labels_graph(self.network, self.transform, shape)
        config = {**self.config, "PERFORMANCE_HINT": "THROUGHPUT"}
        compiled = self.core.compile_model(graph, "CPU", config)
        return openvino.AsyncInferQueue(compiled, 0)  # 0: OpenVINO's optimal request count


def _result(request, confidence: bool) -> Segmentation:
    """A finished request's labels (and confidence) as the caller's own copies: OpenVINO
    reuses its output buffers for the next run."""
    labels = request.get_tensor("labels").data[0].copy()
    return Segmentation(labels, request.get_tensor("confidence").data[0].copy()
                        if confidence else None)
