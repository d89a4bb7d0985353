"""ONNX Runtime on the exported graph: CPU, or CUDA / TensorRT execution providers."""

from __future__ import annotations

from typing import ClassVar

import torch

from fbsnet_ros.inference.artefacts import cache_dir
from fbsnet_ros.inference.backends.base import Backend, BackendUnavailable, require


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the exported network; frame pre- and post-processing on the host."""

    name = "onnxruntime"
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
    batching = False
    batching_refusal = "its session is planned for one frame at the input size"

    @classmethod
    def check(cls, device, precision) -> None:
        super().check(device, precision)
        require("onnxruntime", "onnx", "onnxscript")
        import onnxruntime

        available = onnxruntime.get_available_providers()
        if device.type == "cuda" and "CUDAExecutionProvider" not in available:
            raise BackendUnavailable("onnxruntime has no CUDAExecutionProvider (install "
                                     "onnxruntime-gpu)")
        if precision == "fp16" and "TensorrtExecutionProvider" not in available:
            raise BackendUnavailable("onnxruntime fp16 needs the TensorrtExecutionProvider")

    def __init__(self, model, metadata, transform, device, precision, threads=0) -> None:
        super().__init__(model, metadata, transform, device, precision, threads)
        import onnxruntime

        from fbsnet_ros.inference.export import cached_onnx

        path = cached_onnx(model, metadata)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads would otherwise spin after each run, taking the cores the shared
        # torch post-processing (upsample, argmax) needs right then.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads > 0:
            options.intra_op_num_threads = threads
        # Fix the dynamic axes at one frame of the input size so memory is planned once.
        options.add_free_dimension_override_by_name("batch", 1)
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
