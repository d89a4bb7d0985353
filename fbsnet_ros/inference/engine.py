"""The Segmenter: one RGB frame in, one label map at the frame's size out."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from fbsnet_ros.checkpoint import CheckpointError, ModelMetadata, load_model
from fbsnet_ros.data.classes import UNLABELED
from fbsnet_ros.devices import resolve_device
from fbsnet_ros.errors import InvalidValue
from fbsnet_ros.inference.backends import create_backend
from fbsnet_ros.inference.frames import (  # noqa: F401 (UPSAMPLE_MODES re-exported)
    UPSAMPLE_MODES,
    FrameTransform,
    Segmentation,
    apply_threshold,
    threshold_level,
)
from fbsnet_ros.inference.visualize import palette_array
from fbsnet_ros.model import OUTPUT_STRIDE

log = logging.getLogger(__name__)

# The CamVid model trained on these machines, installed with the package.
DEFAULT_WEIGHTS_NAME = "fbsnet_camvid.pt"


def default_weights_path() -> Path:
    return Path(str(resources.files("fbsnet_ros") / "weights" / DEFAULT_WEIGHTS_NAME))


def check_input_size(input_size) -> tuple[int, int]:
    """(height, width), both positive multiples of the network's output stride."""
    if len(input_size) != 2 or any(int(v) != v or v <= 0 or v % OUTPUT_STRIDE for v in input_size):
        raise InvalidValue(
            f"input_size must be [height, width], positive multiples of {OUTPUT_STRIDE}, "
            f"got {list(input_size)}"
        )
    return int(input_size[0]), int(input_size[1])


class Segmenter:
    """FBSNet inference: resize the whole frame, normalise, run, return labels at camera size.

    The network runs on a backend (fbsnet_ros.inference.backends): 'torch' (eager, the
    reference; fp16 on CUDA, fp32 on the CPU), 'torch-opt', 'onnxruntime', 'openvino', each
    optionally with ':precision', or 'auto'. Every backend shares the same resize, normalisation
    and decoding (in the compiled graph for OpenVINO), so their labels agree. Not thread-safe:
    one caller at a time.
    """

    def __init__(self, model: torch.nn.Module, metadata: ModelMetadata, *, device: str = "auto",
                 input_size=None, upsample: str = "bilinear", backend: str = "torch",
                 threads: int = 0, backend_options: dict | None = None) -> None:
        """`threads`: CPU threads for inference, torch's and the runtime's (0: their defaults,
        every core); `backend_options` go to the backend class (benchmarks: OpenVINO
        frame_graph=False)."""
        if int(threads) != threads or threads < 0:
            raise InvalidValue(f"inference threads must be 0 (the runtime's default) or more, "
                               f"got {threads}")
        if threads:
            # Process-wide: torch runs the eager backends and the host-side pre/post-processing.
            torch.set_num_threads(int(threads))
        self.threads = int(threads)
        self.metadata = metadata
        self.device = resolve_device(device)
        self.input_size = check_input_size(input_size or metadata.input_size)
        self.transform = FrameTransform(self.input_size, metadata.mean, metadata.std, upsample)
        self.backend = create_backend(backend, model.eval(), metadata, self.transform, self.device,
                                      threads=self.threads, **(backend_options or {}))
        self.palette = palette_array(metadata.palette)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "auto",
                        **options) -> Segmenter:
        """Load a checkpoint (None = the shipped CamVid weights); `options` go to __init__."""
        if path is None or str(path) == "":
            path = default_weights_path()
            if not path.is_file():
                raise CheckpointError(f"{path}: the package's default weights are not installed")
        model, metadata = load_model(path)
        segmenter = cls(model, metadata, device=device, **options)
        log.info("loaded %s (%d classes, input %dx%d) on %s, backend %s", path,
                 metadata.config.num_classes, *segmenter.input_size, segmenter.device,
                 segmenter.backend_name)
        return segmenter

    @property
    def backend_name(self) -> str:
        """The backend actually running, as `name:precision` (what 'auto' chose)."""
        return self.backend.spec

    @property
    def upsample(self) -> str:
        return self.transform.upsample

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def num_classes(self) -> int:
        return self.metadata.config.num_classes

    def predict(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB to HxW uint8 class ids at the same size."""
        return self.backend.segment(self._checked(image)).labels

    def segment(self, image: np.ndarray, *, confidence: bool = False,
                threshold: float = 0.0) -> Segmentation:
        """Labels and, when asked (or needed for a threshold above 0), the confidence: the
        top softmax probability of each pixel as 0-255. Pixels below the threshold (0-1) get
        the label UNLABELED (255)."""
        threshold_level(threshold)  # checks the range
        result = self.backend.segment(self._checked(image), confidence or threshold > 0.0)
        return apply_threshold(result, threshold, UNLABELED)

    def segment_batch(self, images: list[np.ndarray], *, confidence: bool = False,
                      threshold: float = 0.0) -> list[Segmentation]:
        """`segment` for several frames (several cameras, any sizes) at once: one network
        batch where the backend can batch (`backend.batching`), in turn otherwise."""
        threshold_level(threshold)
        results = self.backend.segment_batch([self._checked(image) for image in images],
                                             confidence or threshold > 0.0)
        return [apply_threshold(result, threshold, UNLABELED) for result in results]

    @staticmethod
    def _checked(image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        if image.size == 0:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got an empty one "
                             f"({image.shape[0]}x{image.shape[1]})")
        if not image.flags.writeable:
            # Frames decoded straight from a message buffer are read-only; torch.from_numpy
            # warns on those although the engine only reads them. A frame-sized copy is cheap
            # next to the network.
            image = image.copy()
        return image
