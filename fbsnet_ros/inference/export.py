"""ONNX export with dynamic height and width, and the on-disk cache the runtimes read it from."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from fbsnet_ros.inference.checkpoint import ModelMetadata
from fbsnet_ros.model import OUTPUT_STRIDE

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Bumped when the exported graph changes for the same weights, so stale cache entries are not used.
EXPORT_FORMAT = 1
# Tracing size: any multiple of the output stride works, small keeps the export quick.
TRACE_SIZE = (96, 128)
# Where exported graphs are kept between runs; FBSNET_ROS_CACHE_DIR overrides it.
CACHE_ENV = "FBSNET_ROS_CACHE_DIR"


def export_onnx(model: nn.Module, path: str | Path, metadata: ModelMetadata | None = None) -> Path:
    """Write `model` as ONNX: input 'image' 1x3xHxW float32 normalised, output 'logits' 1xKxHxW.

    H and W are dynamic (any multiple of 8). The checkpoint's metadata (class names, palette,
    mean, std, input size) goes into the file's metadata_props as JSON, so a runtime without
    fbsnet_ros can still pre-process frames the same way.
    """
    import onnx

    model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    height_blocks = torch.export.Dim("height_blocks", min=1, max=1024)
    width_blocks = torch.export.Dim("width_blocks", min=1, max=1024)
    example = torch.zeros(1, 3, *TRACE_SIZE)
    # The exporter prints its progress, logs every graph pass and warns about torchvision ops
    # FBSNet never uses: none of it is news to a user.
    with _quiet_exporter():
        program = torch.onnx.export(
            model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={"image": {2: OUTPUT_STRIDE * height_blocks,
                                      3: OUTPUT_STRIDE * width_blocks}},
            dynamo=True, optimize=True, verbose=False)
    proto = program.model_proto
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    if metadata is not None:
        for key, entry in metadata.to_dict().items():
            if key in ("class_names", "palette", "mean", "std", "input_size", "dataset"):
                proto.metadata_props.add(key=key, value=json.dumps(entry))
    proto.doc_string = "FBSNet semantic segmentation exported by fbsnet_ros"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, proto.SerializeToString())
    onnx.checker.check_model(str(path))
    return path


@contextlib.contextmanager
def _quiet_exporter():
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def weights_digest(model: nn.Module) -> str:
    """Names, shapes and values of the state dict plus the export format, as a short hash."""
    digest = hashlib.sha256(f"fbsnet-onnx-{EXPORT_FORMAT}-{torch.__version__}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fbsnet_ros"


def cached_onnx(model: nn.Module, metadata: ModelMetadata | None = None) -> Path:
    """The ONNX file for these weights, exported on first use (tens of seconds) and then reused."""
    path = cache_dir() / f"fbsnet-{weights_digest(model)}.onnx"
    if path.is_file():
        log.debug("using cached ONNX export %s", path)
        return path
    log.info("exporting the model to ONNX (once for these weights) -> %s", path)
    return export_onnx(model, path, metadata)


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
