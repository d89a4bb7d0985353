"""Inference backends: the same FBSNet and the same frame processing on several runtimes.

A backend is named `name[:precision]`, e.g. `torch`, `torch-opt:fp16`, `openvino:bf16`:

| name          | runs on   | precisions (first: default)   | what it does                       |
| ------------- | --------- | ----------------------------- | ---------------------------------- |
| `torch`       | CPU, CUDA | CPU fp32; CUDA fp16, fp32     | eager PyTorch, the reference       |
| `torch-opt`   | CPU, CUDA | CPU fp32; CUDA fp16, fp32     | batch norm folded into convs,      |
|               |           |                               | channels_last, reused buffers;     |
|               |           |                               | CPU: torch.compile with freezing;  |
|               |           |                               | CUDA: a CUDA graph per frame size  |
|               |           |                               | from uint8 upload to uint8 labels, |
|               |           |                               | pinned host buffers                |
| `onnxruntime` | CPU, CUDA | fp32; fp16 with TensorRT only | ONNX Runtime; CUDA / TensorRT EPs  |
| `openvino`    | CPU       | fp32, bf16 (CPUs with bf16)   | OpenVINO CPU plugin                |

`auto` takes the first entry of AUTO_PREFERENCE for the device that is installed, supported by
the hardware and builds without error, and logs its choice. Reduced precision appears there only
where it passes the label-agreement test (test/test_backends.py: >= 99.5 % of pixels equal to
eager fp32 over CamVid val frames).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fbsnet_ros.inference.checkpoint import ModelMetadata
from fbsnet_ros.inference.frames import FrameTransform
from fbsnet_ros.inference.fusion import fold_batch_norm

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
AUTO = "auto"

# The fixed order `auto` tries, per device type, by speed measured with `fbsnet-ros benchmark`
# on this project's 2-core AMD EPYC (AVX-512, avx512_bf16, no AMX) at 360x480 and 512x1024,
# as multiples of eager fp32: OpenVINO bf16 3.1-3.9x, OpenVINO fp32 2.6-3.2x, torch-opt 1.4-1.6x,
# ONNX Runtime 0.8-1.1x. bf16 is listed because it passes the agreement test with the trained
# CamVid weights (99.80 % of CamVid val pixels, worst frame 99.65 %); a CPU without native
# bf16 skips it. On CUDA, fp16 with CUDA graphs removes the per-layer launch cost (the CUDA
# agreement tests gate it where a GPU is present).
AUTO_PREFERENCE = {
    "cpu": ("openvino:bf16", "openvino:fp32", "torch-opt:fp32", "onnxruntime:fp32", "torch:fp32"),
    "cuda": ("torch-opt:fp16", "torch:fp16", "torch:fp32"),
}


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (not installed, no hardware support); the message says why."""


@dataclass(frozen=True)
class BackendSpec:
    """A backend name and an optional precision, written `name[:precision]`."""

    name: str
    precision: str | None = None  # None: the backend's default on its device

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        name, _, precision = str(text).strip().partition(":")
        if name != AUTO and name not in BACKENDS:
            raise ValueError(f"unknown backend {text!r}; choose from {backend_choices()}")
        if precision and precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} in backend {text!r}; "
                             f"choose from {PRECISIONS}")
        if name == AUTO and precision:
            raise ValueError("backend 'auto' chooses its own precision; write just 'auto'")
        return cls(name, precision or None)

    def __str__(self) -> str:
        return self.name if self.precision is None else f"{self.name}:{self.precision}"


class Backend(ABC):
    """Runs FBSNet on one camera frame; subclasses differ only in how the network is run.

    `segment` takes an HxWx3 uint8 RGB frame and returns HxW uint8 labels; the default
    implementation does the shared CPU pre-processing, calls `infer`, and the shared
    post-processing, so every backend sees the same input tensor and decodes the same way.
    """

    name: ClassVar[str]
    # Precisions per device type; the first is the default.
    precisions: ClassVar[dict[str, tuple[str, ...]]]

    def __init__(self, model: nn.Module, metadata: ModelMetadata, transform: FrameTransform,
                 device: torch.device, precision: str) -> None:
        self.metadata = metadata
        self.transform = transform
        self.device = device
        self.precision = precision
        # Every frame is normalised into this one host buffer instead of a fresh tensor.
        self._input = torch.empty((1, 3, *transform.input_size))

    @classmethod
    def check(cls, device: torch.device, precision: str) -> None:
        """Raise BackendUnavailable when this backend cannot run `precision` on `device`."""
        supported = cls.precisions.get(device.type, ())
        if not supported:
            raise BackendUnavailable(f"backend {cls.name!r} does not run on {device.type}")
        if precision not in supported:
            raise BackendUnavailable(f"backend {cls.name!r} supports {supported} on "
                                     f"{device.type}, not {precision}")

    @classmethod
    def default_precision(cls, device: torch.device) -> str:
        supported = cls.precisions.get(device.type, ())
        if not supported:
            raise BackendUnavailable(f"backend {cls.name!r} does not run on {device.type}")
        return supported[0]

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.precision}"

    def describe(self) -> str:
        return f"{self.spec} on {self.device}"

    def segment(self, image: np.ndarray) -> np.ndarray:
        logits = self.infer(self.transform.to_input(image, out=self._input))
        return self.transform.to_labels(logits, image.shape[:2])

    @abstractmethod
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """1x3xhxw float32 normalised input on the CPU to 1xKxhxw logits."""

    def warm_up(self, repeats: int = 2) -> None:
        """Run a black frame through the whole path (compilation, graph capture, autotuning)."""
        height, width = self.transform.input_size
        frame = np.zeros((height, width, 3), np.uint8)
        for _ in range(repeats):
            self.segment(frame)


class TorchBackend(Backend):
    """Eager PyTorch: the reference every other backend is compared with."""

    name = "torch"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp16", "fp32")}

    def __init__(self, model, metadata, transform, device, precision) -> None:
        super().__init__(model, metadata, transform, device, precision)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        # A copy: the caller's model stays fp32 on the CPU for the other backends.
        self.model = copy.deepcopy(model).to(device=device, dtype=self.dtype).eval()

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device, self.dtype))


class OptimizedTorchBackend(Backend):
    """PyTorch with batch norm folded, channels_last and pre-allocated buffers.

    CPU: torch.compile (inductor, freezing: weights become constants and are pre-packed for
    oneDNN), static shapes at the input size. CUDA: the whole frame path (uint8 upload, resize,
    normalise, network, upsample, argmax) is one CUDA graph per frame size, in fp16 by default,
    with pinned host buffers; only uint8 pixels go up and uint8 labels come down.
    """

    name = "torch-opt"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp16", "fp32")}
    # CUDA graphs kept at once; a camera rarely changes size, a benchmark sweeps a few.
    MAX_GRAPHS = 4

    def __init__(self, model, metadata, transform, device, precision, *, compile: bool = True):
        super().__init__(model, metadata, transform, device, precision)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        model = fold_batch_norm(model).to(device=device, dtype=self.dtype)
        self.model = model.to(memory_format=torch.channels_last)
        self.compiled = compile and device.type == "cpu"
        if self.compiled:
            # Static shapes: the input size is fixed for the life of the backend.
            self.model = torch.compile(self.model, dynamic=False, options={"freezing": True})
        self._input = self._input.to(memory_format=torch.channels_last)
        self._graphs: OrderedDict[tuple[int, int], _CudaGraphPipeline] = OrderedDict()
        self._model_graph: _CudaGraphModel | None = None

    def describe(self) -> str:
        how = "torch.compile+freezing" if self.compiled else "eager"
        if self.device.type == "cuda":
            how = "CUDA graphs"
        return f"{self.spec} on {self.device} (BN folded, channels_last, {how})"

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """As Backend.infer; on CUDA the returned logits are a buffer the next call overwrites."""
        if self.device.type == "cuda":
            if self._model_graph is None:
                self._model_graph = _CudaGraphModel(self.model, self._input.shape, self.device,
                                                    self.dtype)
            return self._model_graph.run(batch)
        # Copied into the channels_last buffer the compiled graph was specialised for.
        return self.model(self._input.copy_(batch))

    @torch.inference_mode()
    def segment(self, image: np.ndarray) -> np.ndarray:
        if self.device.type == "cuda":
            return self._graph_for(image.shape[:2]).run(image)
        logits = self.model(self.transform.to_input(image, out=self._input))
        return self.transform.to_labels(logits, image.shape[:2])

    def _graph_for(self, frame_size: tuple[int, int]) -> _CudaGraphPipeline:
        frame_size = (int(frame_size[0]), int(frame_size[1]))
        pipeline = self._graphs.get(frame_size)
        if pipeline is None:
            if len(self._graphs) >= self.MAX_GRAPHS:
                self._graphs.popitem(last=False)
            log.info("capturing a CUDA graph for %dx%d frames", *frame_size)
            pipeline = _CudaGraphPipeline(self.model, self.transform, frame_size, self.device,
                                          self.dtype)
            self._graphs[frame_size] = pipeline
        else:
            self._graphs.move_to_end(frame_size)
        return pipeline


class _CudaGraphPipeline:
    """One frame size on CUDA: static buffers, and the frame-to-labels path as one CUDA graph."""

    WARM_UP_STEPS = 3

    def __init__(self, model: nn.Module, transform: FrameTransform, frame_size: tuple[int, int],
                 device: torch.device, dtype: torch.dtype) -> None:
        self.model, self.transform, self.dtype = model, transform, dtype
        self.frame_size = frame_size
        height, width = frame_size
        input_height, input_width = transform.input_size
        self.scale = transform.scale.to(device)
        self.shift = transform.shift.to(device)
        # Pinned host memory makes the copies asynchronous DMA transfers.
        self.host_frame = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True)
        self.host_labels = torch.empty((height, width), dtype=torch.uint8, pin_memory=True)
        self.device_frame = torch.zeros((height, width, 3), dtype=torch.uint8, device=device)
        # cv2 INTER_NEAREST picks source index floor(dst * src / dst): the same gather here.
        self.nearest_rows = _nearest_indices(input_height, height, device)
        self.nearest_cols = _nearest_indices(input_width, width, device)
        torch.backends.cudnn.benchmark = True
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(self.WARM_UP_STEPS):
                self._labels()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.device_labels = self._labels()
        self.stream = torch.cuda.current_stream(device)

    def _labels(self) -> torch.Tensor:
        """Everything between the uint8 upload and the uint8 download, on the device."""
        pixels = self.device_frame.permute(2, 0, 1).unsqueeze(0).float()  # (1, 3, H, W)
        if tuple(pixels.shape[2:]) != self.transform.input_size:
            # Bilinear, half-pixel centres, no antialiasing: cv2 INTER_LINEAR up to rounding.
            pixels = F.interpolate(pixels, size=self.transform.input_size, mode="bilinear",
                                   align_corners=False)
        batch = torch.addcmul(self.shift, pixels, self.scale)  # (1, 3, h, w)
        batch = batch.to(self.dtype).contiguous(memory_format=torch.channels_last)
        logits = self.model(batch)  # (1, K, h, w)
        if self.transform.upsample == "bilinear" and tuple(logits.shape[2:]) != self.frame_size:
            logits = F.interpolate(logits, size=self.frame_size, mode="bilinear",
                                   align_corners=False)
        labels = logits.argmax(1)[0].to(torch.uint8)
        if tuple(labels.shape) != self.frame_size:
            labels = labels.index_select(0, self.nearest_rows).index_select(1, self.nearest_cols)
        return labels  # (H, W)

    def run(self, image: np.ndarray) -> np.ndarray:
        np.copyto(self.host_frame.numpy(), image)
        self.device_frame.copy_(self.host_frame, non_blocking=True)
        self.graph.replay()
        self.host_labels.copy_(self.device_labels, non_blocking=True)
        self.stream.synchronize()
        # The pinned buffer is overwritten by the next frame: the caller gets its own copy.
        return self.host_labels.numpy().copy()


class _CudaGraphModel:
    """The network alone as a CUDA graph on a static input: what `infer` times on CUDA."""

    def __init__(self, model: nn.Module, input_shape, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.model = model
        self.static_input = torch.zeros(tuple(input_shape), device=device, dtype=dtype)
        self.static_input = self.static_input.contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(_CudaGraphPipeline.WARM_UP_STEPS):
                model(self.static_input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_logits = model(self.static_input)

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        self.static_input.copy_(batch, non_blocking=True)
        self.graph.replay()
        return self.static_logits


def _nearest_indices(source: int, target: int, device: torch.device) -> torch.Tensor:
    index = torch.arange(target, dtype=torch.float64) * (source / target)
    return index.floor().clamp_(max=source - 1).long().to(device)


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the exported graph: CPU, or CUDA / TensorRT execution providers."""

    name = "onnxruntime"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}

    @classmethod
    def check(cls, device, precision) -> None:
        super().check(device, precision)
        _require("onnxruntime", "onnx", "onnxscript")
        import onnxruntime

        available = onnxruntime.get_available_providers()
        if device.type == "cuda" and "CUDAExecutionProvider" not in available:
            raise BackendUnavailable("onnxruntime has no CUDAExecutionProvider (install "
                                     "onnxruntime-gpu)")
        if precision == "fp16" and "TensorrtExecutionProvider" not in available:
            raise BackendUnavailable("onnxruntime fp16 needs the TensorrtExecutionProvider")

    def __init__(self, model, metadata, transform, device, precision) -> None:
        super().__init__(model, metadata, transform, device, precision)
        import onnxruntime

        from fbsnet_ros.inference.export import cached_onnx

        path = cached_onnx(model, metadata)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads would otherwise spin after each run, taking the cores the shared
        # torch post-processing (upsample, argmax) needs right then.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Fix the dynamic axes at the input size so memory is planned once.
        options.add_free_dimension_override_by_name("height", transform.input_size[0])
        options.add_free_dimension_override_by_name("width", transform.input_size[1])
        providers = self._providers(device, precision, onnxruntime.get_available_providers())
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        active = self.session.get_providers()
        if device.type == "cuda" and active[0] == "CPUExecutionProvider":
            raise BackendUnavailable(f"onnxruntime could not start {providers[0][0]}")
        self.providers = active

    @staticmethod
    def _providers(device, precision, available) -> list:
        providers: list = []
        if device.type == "cuda":
            index = device.index or 0
            if "TensorrtExecutionProvider" in available:
                from fbsnet_ros.inference.export import cache_dir

                # Engines are built per input shape (minutes); the cache keeps them across runs.
                providers.append(("TensorrtExecutionProvider", {
                    "device_id": index, "trt_fp16_enable": precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache_dir() / "tensorrt")}))
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        providers.append(("CPUExecutionProvider", {}))
        return providers

    def describe(self) -> str:
        return f"{self.spec} on {self.device} ({', '.join(self.providers)})"

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        from fbsnet_ros.inference.export import INPUT_NAME, OUTPUT_NAME

        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
        return torch.from_numpy(logits)


class OpenVinoBackend(Backend):
    """OpenVINO's CPU plugin, static shapes at the input size, fp32 or bf16 inference precision."""

    name = "openvino"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32", "bf16")}
    # OpenVINO's names for our precisions.
    INFERENCE_PRECISION: ClassVar[dict[str, str]] = {"fp32": "f32", "bf16": "bf16"}

    @classmethod
    def check(cls, device, precision) -> None:
        super().check(device, precision)
        _require("openvino", "onnx", "onnxscript")
        if precision == "bf16" and "BF16" not in openvino_capabilities():
            raise BackendUnavailable("this CPU has no native bf16 (OpenVINO reports "
                                     f"{openvino_capabilities()})")

    def __init__(self, model, metadata, transform, device, precision) -> None:
        super().__init__(model, metadata, transform, device, precision)
        import openvino

        from fbsnet_ros.inference.export import INPUT_NAME, cached_onnx

        core = openvino.Core()
        network = core.read_model(str(cached_onnx(model, metadata)))
        network.reshape({INPUT_NAME: [1, 3, *transform.input_size]})
        # Set explicitly: on CPUs with bf16 OpenVINO would otherwise pick bf16 by itself.
        config = {"INFERENCE_PRECISION_HINT": self.INFERENCE_PRECISION[precision],
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(network, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        self.request.infer({0: batch.numpy()}, share_inputs=True)
        # A view of OpenVINO's output buffer, valid until the next call: decoded right away.
        return torch.from_numpy(self.request.get_output_tensor(0).data)


BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend
    for backend in (TorchBackend, OptimizedTorchBackend, OnnxRuntimeBackend, OpenVinoBackend)
}


def backend_choices() -> tuple[str, ...]:
    """Every value the `backend` option accepts (the node lists these as allowed values)."""
    choices = [AUTO]
    for name, backend in BACKENDS.items():
        choices.append(name)
        precisions = sorted({p for ps in backend.precisions.values() for p in ps},
                            key=PRECISIONS.index)
        choices.extend(f"{name}:{precision}" for precision in precisions)
    return tuple(choices)


def openvino_capabilities() -> tuple[str, ...]:
    import openvino

    return tuple(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _require(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(f"not installed: {', '.join(missing)} (pip install "
                                 f"{' '.join(missing)})")


def available_backends(device: torch.device) -> list[str]:
    """Every `name:precision` that is installed and supported by this machine's hardware."""
    found = []
    for name, backend in BACKENDS.items():
        for precision in backend.precisions.get(device.type, ()):
            try:
                backend.check(device, precision)
            except BackendUnavailable:
                continue
            found.append(f"{name}:{precision}")
    return found


def create_backend(spec: str | BackendSpec, model: nn.Module, metadata: ModelMetadata,
                   transform: FrameTransform, device: torch.device) -> Backend:
    """Build the backend `spec` names (or, for 'auto', the first that works) and warm it up."""
    spec = spec if isinstance(spec, BackendSpec) else BackendSpec.parse(spec)
    if spec.name == AUTO:
        return _create_auto(model, metadata, transform, device)
    backend_type = BACKENDS[spec.name]
    precision = spec.precision or backend_type.default_precision(device)
    backend_type.check(device, precision)
    backend = backend_type(model, metadata, transform, device, precision)
    backend.warm_up()
    log.info("inference backend %s", backend.describe())
    return backend


def _create_auto(model, metadata, transform, device) -> Backend:
    preference = AUTO_PREFERENCE.get(device.type, AUTO_PREFERENCE["cpu"])
    reasons = []
    for candidate in preference:
        try:
            backend = create_backend(candidate, model, metadata, transform, device)
        except Exception as error:  # any failure means: try the next one
            log.debug("auto: %s not used: %s", candidate, error)
            reasons.append(f"{candidate}: {str(error).splitlines()[0] if str(error) else error!r}")
            continue
        skipped = f" (skipped {'; '.join(reasons)})" if reasons else ""
        log.info("backend auto chose %s%s", backend.spec, skipped)
        return backend
    raise BackendUnavailable(f"no backend works on {device}: {'; '.join(reasons)}")
