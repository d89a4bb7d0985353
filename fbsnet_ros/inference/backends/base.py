"""What every backend shares: the Backend interface, its error, and graphs kept per frame size."""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar, Generic, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from fbsnet_ros.checkpoint import ModelMetadata
from fbsnet_ros.errors import UserError
from fbsnet_ros.inference.frames import FrameTransform, Segmentation

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
CPU = torch.device("cpu")

Graph = TypeVar("Graph")


class BackendUnavailable(UserError, RuntimeError):
    """This backend cannot run here (not installed, no hardware support); the message says why.
    The user's choice of backend to fix: the command line reports it in one line."""


class Backend(ABC):
    """Runs FBSNet on one camera frame; subclasses differ in how the network is run.

    `segment` takes an HxWx3 uint8 RGB frame and returns its HxW uint8 labels and, when asked,
    its confidence; the default implementation does the shared CPU pre-processing, calls
    `infer`, and the shared post-processing, so every backend sees the same input tensor and
    decodes the same way. Backends whose compiled graph holds the pre- and post-processing
    override it. `segment_batch` runs several frames (several cameras) at once where the
    backend can (`batching`: as one network batch, or OpenVINO's parallel streams), else in
    turn.
    """

    name: ClassVar[str]
    # Precisions per device type; the first is the default.
    precisions: ClassVar[dict[str, tuple[str, ...]]]
    # Whether `segment_batch` runs frames through the network together (one batch, or parallel
    # streams); when False it runs them in turn, and `batching_refusal` says why.
    batching: ClassVar[bool] = True
    batching_refusal: ClassVar[str] = ""

    def __init__(self, model: nn.Module, metadata: ModelMetadata, transform: FrameTransform,
                 device: torch.device, precision: str, threads: int = 0) -> None:
        """threads: CPU threads for the runtime's own pool (0: the runtime's default)."""
        self.metadata = metadata
        self.threads = threads
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

    def segment(self, image: np.ndarray, confidence: bool = False) -> Segmentation:
        logits = self.infer(self.transform.to_input(image, out=self._input))
        return self.transform.decode(logits, image.shape[:2], confidence)

    def segment_batch(self, images: list[np.ndarray], confidence: bool = False
                      ) -> list[Segmentation]:
        """Several frames (any sizes) at once: one network batch where the backend can."""
        if len(images) == 1 or not self.batching:
            return [self.segment(image, confidence) for image in images]
        batch = torch.empty((len(images), 3, *self.transform.input_size))
        for row, image in zip(batch, images):
            self.transform.to_input(image, out=row.unsqueeze(0))
        logits = self.infer(batch)
        return [self.transform.decode(logits[index:index + 1], image.shape[:2], confidence)
                for index, image in enumerate(images)]

    @abstractmethod
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Nx3xhxw float32 normalised input on `input_device` to NxKxhxw logits (N > 1 only
        where `batching`)."""

    def warm_up(self, repeats: int = 2) -> None:
        """Run a black frame through the whole path (compilation, graph capture, autotuning)."""
        height, width = self.transform.input_size
        frame = np.zeros((height, width, 3), np.uint8)
        for _ in range(repeats):
            self.segment(frame)


class GraphShape(NamedTuple):
    """What a graph specialised to fixed shapes is built for."""

    height: int  # the camera frame's
    width: int
    confidence: bool = False  # whether it also returns the confidence

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.height, self.width

    def __str__(self) -> str:
        return f"{self.height}x{self.width} frames{', with confidence' if self.confidence else ''}"


class PerFrameSize(Generic[Graph]):
    """Graphs specialised to one frame size (and outputs), built on first use, the most
    recently used kept."""

    # A camera rarely changes size; a benchmark sweeps a few; several cameras add a few more.
    CAPACITY = 8

    def __init__(self, build: Callable[[GraphShape], Graph], what: str) -> None:
        self.build = build
        self.what = what
        self.graphs: OrderedDict[GraphShape, Graph] = OrderedDict()

    def get(self, frame_size: tuple[int, ...], confidence: bool = False) -> Graph:
        shape = GraphShape(int(frame_size[0]), int(frame_size[1]), confidence)
        graph = self.graphs.get(shape)
        if graph is None:
            if len(self.graphs) >= self.CAPACITY:
                self.graphs.popitem(last=False)
            log.info("building %s for %s", self.what, shape)
            graph = self.build(shape)
            self.graphs[shape] = graph
        else:
            self.graphs.move_to_end(shape)
        return graph


def require(*modules: str) -> None:
    """Raise BackendUnavailable naming the modules that are not installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendUnavailable(f"not installed: {', '.join(missing)} (pip install "
                                 f"{' '.join(missing)})")
