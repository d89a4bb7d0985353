"""What every backend shares: the Backend interface, its error, and graphs kept per frame size."""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from fbsnet_ros.checkpoint import ModelMetadata
from fbsnet_ros.inference.frames import FrameTransform

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
CPU = torch.device("cpu")

Graph = TypeVar("Graph")


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (not installed, no hardware support); the message says why."""


class Backend(ABC):
    """Runs FBSNet on one camera frame; subclasses differ in how the network is run.

    `segment` takes an HxWx3 uint8 RGB frame and returns HxW uint8 labels; the default
    implementation does the shared CPU pre-processing, calls `infer`, and the shared
    post-processing, so every backend sees the same input tensor and decodes the same way.
    Backends whose compiled graph holds the pre- and post-processing override it.
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
        # Where `infer` takes its input batch: the runtime's device, or host memory for
        # runtimes that copy from there themselves.
        self.input_device = CPU
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

    @classmethod
    def auto_refusal(cls, precision: str, metadata: ModelMetadata) -> str | None:
        """Why `auto` must not choose this precision for these weights (None: it may)."""
        return None

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
        """1x3xhxw float32 normalised input on `input_device` to 1xKxhxw logits."""

    def warm_up(self, repeats: int = 2) -> None:
        """Run a black frame through the whole path (compilation, graph capture, autotuning)."""
        height, width = self.transform.input_size
        frame = np.zeros((height, width, 3), np.uint8)
        for _ in range(repeats):
            self.segment(frame)


class PerFrameSize(Generic[Graph]):
    """Graphs specialised to one camera frame size, built on first use, the most recent kept."""

    # A camera rarely changes size; a benchmark sweeps a few.
    CAPACITY = 4

    def __init__(self, build: Callable[[tuple[int, int]], Graph], what: str) -> None:
        self.build = build
        self.what = what
        self.graphs: OrderedDict[tuple[int, int], Graph] = OrderedDict()

    def get(self, frame_size: tuple[int, ...]) -> Graph:
        frame_size = (int(frame_size[0]), int(frame_size[1]))
        graph = self.graphs.get(frame_size)
        if graph is None:
            if len(self.graphs) >= self.CAPACITY:
                self.graphs.popitem(last=False)
            log.info("building %s for %dx%d frames", self.what, *frame_size)
            graph = self.build(frame_size)
            self.graphs[frame_size] = graph
        else:
            self.graphs.move_to_end(frame_size)
        return graph


def require(*modules: str) -> None:
    """Raise BackendUnavailable naming the modules that are not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(f"not installed: {', '.join(missing)} (pip install "
                                 f"{' '.join(missing)})")
