"""Checkpoint files: format, inference layout and metadata, atomic writes, weights_only loads.

Below both training and inference (it imports torch, the model and the class tables only):
the training loop writes its resume state in the same format, and the engine and the backends
read it.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from fbsnet_ros.data.classes import (
    CAMVID_CLASS_NAMES,
    CAMVID_PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from fbsnet_ros.errors import UserError
from fbsnet_ros.model import FBSNet, FBSNetConfig

# Bumped when the layout of the checkpoint dictionary changes.
CHECKPOINT_FORMAT = 1
# The checkpoint key of the INT8 model (OpenVINO IR as uint8 tensors), beside "metadata".
INT8_MODEL_KEY = "int8_model"


# How torch.save files begin: a zip archive (PyTorch >= 1.6), or the legacy format's pickled
# magic number (protocol 2, a 10-byte long 0x1950a86a20f9469cfc6c).
ZIP_SIGNATURE = b"PK\x03\x04"
LEGACY_SIGNATURE = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# The part of PyTorch's weights_only refusal worth showing: which global the file asked for.
# The rest of its message advises weights_only=False, which must never reach a user.
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class CheckpointError(UserError, RuntimeError):
    """A weights file is missing, corrupt, unsafe or inconsistent; the message names it."""


@dataclass
class ModelMetadata:
    """What inference needs beside the weights, stored in every checkpoint."""

    config: FBSNetConfig
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]  # (height, width) the model was trained to see
    dataset: str = "unknown"
    training: dict = field(default_factory=dict)  # summary: recipe, epochs, val mIoU, time
    seed: int | None = None
    # The INT8 model's record (`fbsnet-ros quantize`): accuracy gate, calibration, versions and
    # the digest of the weights it was made from; empty when there is none.
    int8: dict = field(default_factory=dict)
    # The INT8 model itself, OpenVINO IR {"xml": bytes, "bin": bytes}; stored beside the
    # metadata in the checkpoint as uint8 tensors, so weights_only loading reads it.
    int8_model: dict | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        num_classes = self.config.num_classes
        if len(self.class_names) != num_classes or len(self.palette) != num_classes:
            raise CheckpointError(
                f"model has {num_classes} classes but {len(self.class_names)} class names "
                f"and {len(self.palette)} palette colours"
            )

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "palette": [list(colour) for colour in self.palette],
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": list(self.input_size),
            "dataset": self.dataset,
            "training": self.training,
            "seed": self.seed,
            "int8": self.int8,
        }

    @classmethod
    def from_dict(cls, values: dict) -> ModelMetadata:
        return cls(
            config=FBSNetConfig.from_dict(values["config"]),
            class_names=tuple(values["class_names"]),
            palette=tuple(tuple(int(v) for v in colour) for colour in values["palette"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
            input_size=tuple(int(v) for v in values["input_size"]),
            dataset=values.get("dataset", "unknown"),
            training=values.get("training", {}),
            seed=values.get("seed"),
            int8=values.get("int8", {}),
        )


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file beside the target, then rename: never half-written."""
    atomic_write(path, lambda stream: torch.save(obj, stream))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(stream)` into a temporary file beside `path`, flushed to disk, then renamed over
    `path`: a reader (or a crash) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600; a checkpoint is as readable as any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def safe_load(path: str | Path) -> dict:
    """torch.load with weights_only=True, turning every failure into one CheckpointError line.

    A file torch.save did not write ("not a PyTorch checkpoint") is told apart from a damaged
    one and from a checkpoint that holds pickled code (refused, never loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    with path.open("rb") as stream:
        head = stream.read(len(LEGACY_SIGNATURE))
    if not head.startswith(ZIP_SIGNATURE) and head != LEGACY_SIGNATURE:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_describe_content(head)})")
    if head.startswith(ZIP_SIGNATURE) and not _is_torch_archive(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a zip archive of other files)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = _UNSUPPORTED_GLOBAL.search(str(error))
        detail = f" (it asks for {wanted.group(1)})" if wanted else ""
        raise CheckpointError(
            f"{path}: refused, the checkpoint holds pickled Python objects besides tensors and "
            f"plain values; loading them could run code{detail}"
        ) from None
    except Exception as error:  # torch.load raises anything from IndexError to RuntimeError
        # on damaged files; all of them mean the same to the user.
        # The first sentence: PyTorch's go on to speculate about how the file got damaged.
        reason = str(error).strip().split(". ")[0].rstrip(".") or type(error).__name__
        raise CheckpointError(f"{path}: damaged or truncated checkpoint ({reason})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not an fbsnet_ros checkpoint (top level is not a dict)")
    return payload


def _describe_content(head: bytes) -> str:
    """What a file that is not a checkpoint looks like, from its first bytes."""
    if not head:
        return "the file is empty"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")):
        return "it is an image"
    if head.startswith(b"\x80"):
        return "a pickle, but not one torch.save wrote"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary content"
    return "it is a text file"


def _is_torch_archive(path: Path) -> bool:
    """torch.save's zip layout: <name>/data.pkl; a damaged archive gets to torch.load."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        return True


def save_inference_checkpoint(model: FBSNet, metadata: ModelMetadata, path: str | Path) -> None:
    """One file, weights and metadata, no optimiser state."""
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "kind": "inference", "metadata": metadata.to_dict(),
               "state_dict": state}
    if metadata.int8_model is not None:
        # zlib: the IR's XML (~7 MB, shape arithmetic of the dynamic-size graph) shrinks 20x.
        payload[INT8_MODEL_KEY] = {"encoding": "zlib", "parts": {
            part: torch.frombuffer(bytearray(zlib.compress(data, 9)), dtype=torch.uint8)
            for part, data in metadata.int8_model.items()}}
    atomic_save(payload, path)


def load_model(path: str | Path) -> tuple[FBSNet, ModelMetadata]:
    """An FBSNet in eval mode and its metadata, from an inference or a training checkpoint."""
    payload = safe_load(path)
    if "state_dict" not in payload or "metadata" not in payload:
        raise CheckpointError(f"{path}: not an fbsnet_ros checkpoint (no state_dict/metadata)")
    try:
        metadata = ModelMetadata.from_dict(payload["metadata"])
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: checkpoint metadata is invalid ({error})") from None
    stored = payload.get(INT8_MODEL_KEY)
    if isinstance(stored, dict) and stored.get("encoding") == "zlib":
        try:
            metadata.int8_model = {part: zlib.decompress(tensor.numpy().tobytes())
                                   for part, tensor in stored["parts"].items()}
        except (KeyError, AttributeError, zlib.error) as error:
            raise CheckpointError(f"{path}: damaged INT8 model ({error})") from None
    model = FBSNet(config=metadata.config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model config ({reason})") from None
    return model.eval(), metadata


def random_camvid_model(*, input_size: tuple[int, int] = (360, 480), dataset: str = "random",
                        seed: int | None = None,
                        training: dict | None = None) -> tuple[FBSNet, ModelMetadata]:
    """A randomly initialised CamVid FBSNet in eval mode and its metadata: what benchmarks time
    where there are no trained weights, and what tests save as a checkpoint.

    With `seed`, the same weights every time, without touching the caller's random state.
    """
    config = FBSNetConfig(num_classes=len(CAMVID_CLASS_NAMES))
    metadata = ModelMetadata(config=config, class_names=CAMVID_CLASS_NAMES, palette=CAMVID_PALETTE,
                             mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=input_size,
                             dataset=dataset, training=training or {}, seed=seed)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = FBSNet(config=config)
    return model.eval(), metadata
