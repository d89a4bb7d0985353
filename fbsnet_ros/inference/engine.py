"""The Segmenter: one RGB frame in, one label map at the frame's size out."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from fbsnet_ros.inference.checkpoint import CheckpointError, ModelMetadata, load_model
from fbsnet_ros.inference.visualize import palette_array
from fbsnet_ros.model import OUTPUT_STRIDE

log = logging.getLogger(__name__)

# The CamVid model trained on these machines, installed with the package.
DEFAULT_WEIGHTS_NAME = "fbsnet_camvid.pt"

# How logits at the model's input size return to the camera's size.
UPSAMPLE_MODES = ("bilinear", "nearest")


def default_weights_path() -> Path:
    return Path(str(resources.files("fbsnet_ros") / "weights" / DEFAULT_WEIGHTS_NAME))


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available; use 'auto' or 'cpu'")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device '{name}' is not a torch device; use auto, cpu or cuda[:N]") from None


def check_input_size(input_size) -> tuple[int, int]:
    """(height, width), both positive multiples of the network's output stride."""
    if len(input_size) != 2 or any(int(v) != v or v <= 0 or v % OUTPUT_STRIDE for v in input_size):
        raise ValueError(
            f"input_size must be [height, width], positive multiples of {OUTPUT_STRIDE}, "
            f"got {list(input_size)}"
        )
    return int(input_size[0]), int(input_size[1])


class Segmenter:
    """FBSNet inference: resize the whole frame, normalise, run, return labels at camera size.

    CUDA runs in fp16; the CPU in fp32. Not thread-safe: one caller at a time.
    """

    def __init__(self, model: torch.nn.Module, metadata: ModelMetadata, *, device: str = "auto",
                 input_size=None, upsample: str = "bilinear") -> None:
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.metadata = metadata
        self.device = resolve_device(device)
        self.input_size = check_input_size(input_size or metadata.input_size)
        self.upsample = upsample
        self.half = self.device.type == "cuda"
        model = model.to(self.device).eval()
        self.model = model.half() if self.half else model
        dtype = torch.float16 if self.half else torch.float32
        self._mean = torch.tensor(metadata.mean, device=self.device, dtype=dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(metadata.std, device=self.device, dtype=dtype).view(1, 3, 1, 1)
        self.palette = palette_array(metadata.palette)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "auto",
                        **options) -> Segmenter:
        """Load a checkpoint (None = the shipped CamVid weights)."""
        if path is None or str(path) == "":
            path = default_weights_path()
            if not path.is_file():
                raise CheckpointError(f"{path}: the package's default weights are not installed")
        model, metadata = load_model(path)
        segmenter = cls(model, metadata, device=device, **options)
        log.info("loaded %s (%d classes, input %dx%d) on %s", path, metadata.config.num_classes,
                 *segmenter.input_size, segmenter.device)
        return segmenter

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def num_classes(self) -> int:
        return self.metadata.config.num_classes

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB to a normalised 1x3xhxw tensor at the input size."""
        height, width = self.input_size
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        tensor = tensor.permute(2, 0, 1).unsqueeze(0).to(self._mean.dtype).div_(255.0)
        return tensor.sub_(self._mean).div_(self._std)

    def postprocess(self, logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """1xKxhxw logits to HxW uint8 labels at `size`."""
        if self.upsample == "bilinear" and tuple(logits.shape[2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        labels = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        if labels.shape != size:
            labels = cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        return labels

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB to HxW uint8 class ids at the same size."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        logits = self.model(self.preprocess(image))
        return self.postprocess(logits, image.shape[:2])
