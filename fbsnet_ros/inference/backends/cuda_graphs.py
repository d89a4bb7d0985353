"""CUDA graphs for torch-opt: the whole frame-to-labels path, or the network alone, replayed."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fbsnet_ros.inference.frames import FrameTransform, Segmentation, confidence_from_logits

# Untimed runs on a side stream before capture: cuDNN picks its algorithms and the caching
# allocator settles, so the captured graph holds the steady-state kernels and buffers.
WARM_UP_STEPS = 3


def _capture(device: torch.device, run) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Warm `run` up on a side stream, then capture it; returns the graph and its output."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(WARM_UP_STEPS):
            run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        output = run()
    return graph, output


class CudaGraphPipeline:
    """One frame size on CUDA: static buffers, and the frame-to-labels path (and the confidence,
    when built with it) as one CUDA graph."""

    def __init__(self, model: nn.Module, transform: FrameTransform, frame_size: tuple[int, int],
                 device: torch.device, dtype: torch.dtype, confidence: bool = False) -> None:
        self.model, self.transform, self.dtype = model, transform, dtype
        self.frame_size = frame_size
        self.confidence = confidence
        height, width = frame_size
        input_height, input_width = transform.input_size
        self.scale = transform.scale.to(device)
        self.shift = transform.shift.to(device)
        # Pinned host memory makes the copies asynchronous DMA transfers: labels, then the
        # confidence when asked for.
        self.host_frame = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True)
        self.host_maps = torch.empty((1 + confidence, height, width), dtype=torch.uint8,
                                     pin_memory=True)
        self.device_frame = torch.zeros((height, width, 3), dtype=torch.uint8, device=device)
        # cv2 INTER_NEAREST picks source index floor(dst * src / dst): the same gather here.
        self.nearest_rows = nearest_indices(input_height, height, device)
        self.nearest_cols = nearest_indices(input_width, width, device)
        torch.backends.cudnn.benchmark = True
        self.graph, self.device_maps = _capture(device, self._maps)
        self.stream = torch.cuda.current_stream(device)

    def _maps(self) -> torch.Tensor:
        """Everything between the uint8 upload and the uint8 download, on the device: labels
        (and the confidence) as a (1 or 2)xHxW uint8 tensor."""
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
        maps = logits.argmax(1).to(torch.uint8)  # (1, h', w')
        if self.confidence:
            maps = torch.cat((maps, confidence_from_logits(logits)))
        if tuple(maps.shape[1:]) != self.frame_size:
            maps = maps.index_select(1, self.nearest_rows).index_select(2, self.nearest_cols)
        return maps  # (1 or 2, H, W)

    def run(self, image: np.ndarray) -> Segmentation:
        np.copyto(self.host_frame.numpy(), image)
        self.device_frame.copy_(self.host_frame, non_blocking=True)
        self.graph.replay()
        self.host_maps.copy_(self.device_maps, non_blocking=True)
        self.stream.synchronize()
        # The pinned buffer is overwritten by the next frame: the caller gets its own copy.
        maps = self.host_maps.numpy().copy()
        return Segmentation(maps[0], maps[1] if self.confidence else None)


class CudaGraphModel:
    """The network alone as a CUDA graph on a static input: what `infer` times on CUDA."""

    def __init__(self, model: nn.Module, input_shape, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.static_input = torch.zeros(tuple(input_shape), device=device, dtype=dtype)
        self.static_input = self.static_input.contiguous(memory_format=torch.channels_last)
        self.graph, self.static_logits = _capture(device, lambda: model(self.static_input))

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        self.static_input.copy_(batch, non_blocking=True)
        self.graph.replay()
        return self.static_logits


def nearest_indices(source: int, target: int, device: torch.device | None = None
                    ) -> torch.Tensor:
    """Source index of each of `target` outputs as cv2 INTER_NEAREST picks it: floor(i * s / t)."""
    index = torch.arange(target, dtype=torch.float64) * (source / target)
    return index.floor().clamp_(max=source - 1).long().to(device or "cpu")
