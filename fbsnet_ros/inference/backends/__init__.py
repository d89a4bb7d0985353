"""Inference backends: the same FBSNet and the same frame processing on several runtimes.

A backend is named `name[:precision]`, e.g. `torch`, `torch-opt:fp16`, `openvino:int8`:

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
| `openvino`    | CPU       | fp32, bf16 (CPUs with bf16),  | OpenVINO CPU plugin, uint8 frame   |
|               |           | int8 (weights that hold an    | to uint8 labels in one graph       |
|               |           | INT8 model)                   |                                    |

Modules: `registry` (names, the registry, `auto`), `base` (the Backend interface),
`pytorch` and `cuda_graphs` (the PyTorch backends), `onnxruntime_backend` and
`openvino_backend` (the runtimes of the exported graph). A new backend is a Backend subclass in
a module of its own, listed in `registry.BACKENDS`.

`auto` takes the first entry of AUTO_PREFERENCE for the device that is installed, supported by
the hardware, allowed for the weights and builds without error, and logs its choice. Reduced
precision appears there only where it passes its test: label agreement for fp16/bf16
(test/test_backends.py: >= 99.5 % of pixels equal to eager fp32 over CamVid val frames), the
accuracy gate recorded in the weights for int8 (CamVid val mIoU within 0.5 points of fp32).
"""

from fbsnet_ros.inference.backends.base import (
    PRECISIONS,
    Backend,
    BackendUnavailable,
)
from fbsnet_ros.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from fbsnet_ros.inference.backends.openvino_backend import (
    QUANTIZE_COMMAND,
    OpenVinoBackend,
    openvino_capabilities,
)
from fbsnet_ros.inference.backends.pytorch import OptimizedTorchBackend, TorchBackend
from fbsnet_ros.inference.backends.registry import (
    AUTO,
    AUTO_PREFERENCE,
    BACKENDS,
    BackendSpec,
    available_backends,
    backend_choices,
    create_backend,
)

__all__ = [
    "AUTO",
    "AUTO_PREFERENCE",
    "BACKENDS",
    "PRECISIONS",
    "QUANTIZE_COMMAND",
    "Backend",
    "BackendSpec",
    "BackendUnavailable",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "OptimizedTorchBackend",
    "TorchBackend",
    "available_backends",
    "backend_choices",
    "create_backend",
    "openvino_capabilities",
]
