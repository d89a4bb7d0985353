"""The PyTorch backends: eager (the reference) and torch-opt (folded, compiled, CUDA graphs)."""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch

from fbsnet_ros.inference.backends.base import Backend, GraphShape, PerFrameSize
from fbsnet_ros.inference.backends.cuda_graphs import CudaGraphModel, CudaGraphPipeline
from fbsnet_ros.inference.frames import Segmentation
from fbsnet_ros.inference.fusion import fold_batch_norm, inference_network


class TorchBackend(Backend):
    """Eager PyTorch: the reference every other backend is compared with."""

    name = "torch"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp16", "fp32")}

    def __init__(self, model, metadata, transform, device, precision, threads=0) -> None:
        super().__init__(model, metadata, transform, device, precision, threads)
        self.input_device = device
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        # A copy: the caller's model stays fp32 on the CPU for the other backends.
        self.model = copy.deepcopy(model).to(device=device, dtype=self.dtype).eval()

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device, self.dtype))


class OptimizedTorchBackend(Backend):
    """PyTorch with channel shuffles and batch norm folded, channels_last, pre-allocated buffers.

    CPU: torch.compile (inductor, freezing: weights become constants and are pre-packed for
    oneDNN), static shapes at the input size. CUDA: the whole frame path (uint8 upload, resize,
    normalise, network, upsample, argmax) is one CUDA graph per frame size, in fp16 by default,
    with pinned host buffers; only uint8 pixels go up and uint8 labels come down.
    """

    name = "torch-opt"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp16", "fp32")}
    batching = False
    batching_refusal = ("its graphs are specialised to one frame (compiled on the CPU, CUDA "
                        "graphs on a GPU)")

    def __init__(self, model, metadata, transform, device, precision, threads=0, *,
                 compile: bool = True):
        super().__init__(model, metadata, transform, device, precision, threads)
        self.input_device = device
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        model = fold_batch_norm(inference_network(model)).to(device=device, dtype=self.dtype)
        self.model = model.to(memory_format=torch.channels_last)
        self.compiled = compile and device.type == "cpu"
        if self.compiled:
            # Static shapes: the input size is fixed for the life of the backend.
            self.model = torch.compile(self.model, dynamic=False, options={"freezing": True})
        self._input = self._input.to(memory_format=torch.channels_last)
        self._pipelines = PerFrameSize(self._capture_pipeline, "a CUDA graph")
        self._model_graph: CudaGraphModel | None = None

    def describe(self) -> str:
        how = "torch.compile+freezing" if self.compiled else "eager"
        if self.device.type == "cuda":
            how = "CUDA graphs"
        return f"{self.spec} on {self.device} (shuffles and BN folded, channels_last, {how})"

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """As Backend.infer; on CUDA the returned logits are a buffer the next call overwrites."""
        if self.device.type == "cuda":
            if self._model_graph is None:
                self._model_graph = CudaGraphModel(self.model, self._input.shape, self.device,
                                                   self.dtype)
            return self._model_graph.run(batch)
        if batch.data_ptr() != self._input.data_ptr():
            # Into the channels_last buffer the compiled graph was specialised for.
            batch = self._input.copy_(batch)
        return self.model(batch)

    @torch.inference_mode()
    def segment(self, image: np.ndarray, confidence: bool = False) -> Segmentation:
        if self.device.type == "cuda":
            return self._pipelines.get(image.shape[:2], confidence=confidence).run(image)
        return super().segment(image, confidence)

    def _capture_pipeline(self, shape: GraphShape) -> CudaGraphPipeline:
        return CudaGraphPipeline(self.model, self.transform, shape.frame_size, self.device,
                                 self.dtype, shape.confidence)
