"""Backend names (`name[:precision]`), the registry of backend classes, and `auto`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from fbsnet_ros.checkpoint import ModelMetadata
from fbsnet_ros.inference.backends.base import PRECISIONS, Backend, BackendUnavailable
from fbsnet_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from fbsnet_ros.inference.backends.openvino_backend import OpenVinoBackend
from fbsnet_ros.inference.backends.pytorch import OptimizedTorchBackend, TorchBackend
from fbsnet_ros.inference.frames import FrameTransform

log = logging.getLogger(__name__)

AUTO = "auto"

# The fixed order `auto` tries, per device type, by speed measured with `fbsnet-ros benchmark`
# on this project's 2-core AMD EPYC (AVX-512 with VNNI and bf16, no AMX) at 360x480 and
# 512x1024. OpenVINO runs the whole frame-to-labels path in one graph (README "Speed").
# bf16 is listed because it passes the label-agreement test with the trained CamVid weights
# (99.80 % of CamVid val pixels, worst frame 99.65 %); a CPU without native bf16 skips it.
# int8 only for weights whose metadata records a passed accuracy gate (CamVid val mIoU within
# 0.5 points of eager fp32, `fbsnet-ros quantize`); it comes first because on that EPYC its
# INT8 dense convolutions with the rest in bf16 measured faster than bf16 alone (1.1x, README
# "INT8"); where the CPU has no bf16 its rest runs in fp32. On CUDA, fp16 with CUDA graphs
# removes the per-layer launch cost (the CUDA agreement tests gate it where a GPU is present).
AUTO_PREFERENCE = {
    "cpu": ("openvino:int8", "openvino:bf16", "openvino:fp32", "torch-opt:fp32",
            "onnxruntime:fp32", "torch:fp32"),
    "cuda": ("torch-opt:fp16", "torch:fp16", "torch:fp32"),
}

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend
    for backend in (TorchBackend, OptimizedTorchBackend, OnnxRuntimeBackend, OpenVinoBackend)
}


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


def backend_choices() -> tuple[str, ...]:
    """Every value the `backend` option accepts (the node lists these as allowed values)."""
    choices = [AUTO]
    for name, backend in BACKENDS.items():
        choices.append(name)
        precisions = sorted({p for ps in backend.precisions.values() for p in ps},
                            key=PRECISIONS.index)
        choices.extend(f"{name}:{precision}" for precision in precisions)
    return tuple(choices)


def available_backends(device: torch.device) -> list[str]:
    """Every `name:precision` installed and supported by this machine's hardware (int8 also
    needs weights that hold an INT8 model)."""
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
                   transform: FrameTransform, device: torch.device, **options) -> Backend:
    """Build the backend `spec` names (or, for 'auto', the first that works) and warm it up.

    `options` go to the backend class: `threads` (every backend), OpenVINO's frame_graph=False
    (benchmarks); 'auto' passes on `threads` only.
    """
    spec = spec if isinstance(spec, BackendSpec) else BackendSpec.parse(spec)
    if spec.name == AUTO:
        return _create_auto(model, metadata, transform, device, options.get("threads", 0))
    backend_type = BACKENDS[spec.name]
    precision = spec.precision or backend_type.default_precision(device)
    backend_type.check(device, precision)
    backend = backend_type(model, metadata, transform, device, precision, **options)
    backend.warm_up()
    log.info("inference backend %s", backend.describe())
    return backend


def _create_auto(model, metadata, transform, device, threads: int = 0) -> Backend:
    preference = AUTO_PREFERENCE.get(device.type, AUTO_PREFERENCE["cpu"])
    reasons = []
    for candidate in preference:
        spec = BackendSpec.parse(candidate)
        refusal = BACKENDS[spec.name].auto_refusal(spec.precision, metadata)
        if refusal:
            reasons.append(f"{candidate}: {refusal}")
            continue
        try:
            backend = create_backend(spec, model, metadata, transform, device, threads=threads)
        except Exception as error:  # any failure means: try the next one
            log.debug("auto: %s not used: %s", candidate, error)
            reasons.append(f"{candidate}: {str(error).splitlines()[0] if str(error) else error!r}")
            continue
        skipped = f" (skipped {'; '.join(reasons)})" if reasons else ""
        log.info("backend auto chose %s%s", backend.spec, skipped)
        return backend
    raise BackendUnavailable(f"no backend works on {device}: {'; '.join(reasons)}")
